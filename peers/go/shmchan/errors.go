// SPDX-License-Identifier: MIT
package shmchan

import (
	"errors"
	"fmt"
)

// Sentinel errors: test with errors.Is. Errors returned by this package wrap one of them with
// detail (the channel, the field, the values).
var (
	ErrInvalid        = errors.New("shmchan: invalid argument")
	ErrExists         = errors.New("shmchan: channel exists")
	ErrNotFound       = errors.New("shmchan: channel not found")
	ErrPermission     = errors.New("shmchan: permission denied")
	ErrBusy           = errors.New("shmchan: busy")
	ErrNotInitialised = errors.New("shmchan: channel not initialised")
	ErrIncompatible   = errors.New("shmchan: incompatible channel")
	ErrCorrupt        = errors.New("shmchan: corrupt channel")
	ErrTimeout        = errors.New("shmchan: timed out")
	ErrFull           = errors.New("shmchan: channel full")
	ErrEmpty          = errors.New("shmchan: channel empty")
	ErrPeerDead       = errors.New("shmchan: peer dead")
	ErrEnded          = errors.New("shmchan: end of stream")
	ErrClosed         = errors.New("shmchan: closed")
	ErrPinned         = errors.New("shmchan: every slot is held by this reader")
	ErrLapped         = errors.New("shmchan: message overwritten by the writer")
	ErrTooLarge       = errors.New("shmchan: message larger than the buffer or slot")
	ErrNoData         = errors.New("shmchan: board holds no value yet")
	ErrDecode         = errors.New("shmchan: malformed FlatBuffers message")
)

func errf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))
}
