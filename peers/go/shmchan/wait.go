// SPDX-License-Identifier: MIT
//go:build linux && amd64

package shmchan

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

const (
	slice       = 100 * time.Millisecond // R19: longest futex sleep between liveness checks
	ctxSlice    = 10 * time.Millisecond  // with a cancellable context: how soon cancellation is seen
	DefaultSpin = 100 * time.Microsecond // poll this long before sleeping (R22)
)

// Timeouts: Forever (< 0) waits until the condition, the peer's death or the context's end; 0
// never waits (ErrFull / ErrEmpty); a positive duration returns ErrTimeout when it passes.
const Forever time.Duration = -1

// waiter says what a wait watches (R22).
type waiter struct {
	watched      *uint64 // the position that changes
	stale        uint64  // its value that means "keep waiting"
	wake         *uint32 // the wake count the peer bumps
	flag         *uint32 // our waiting flag (SPSC) or the sleeper count (counted)
	counted      bool
	endsOnClose  bool // a reader: writer_state == 2 ends the stream (R29)
	peerIsWriter bool
	checkPeer    bool
	spin         time.Duration
}

// waitChange waits until *watched != stale and returns its new value (R22), or ErrEnded,
// ErrPeerDead, ErrTimeout, the context's error, or errEmptyNow when timeout is 0.
func (c *Channel) waitChange(ctx context.Context, wt waiter, timeout time.Duration) (uint64, error) {
	start := monoNow()
	deadline := start + timeout
	if timeout != 0 && wt.spin > 0 {
		spinEnd := start + wt.spin
		if timeout > 0 && deadline < spinEnd {
			spinEnd = deadline
		}
		for i := 0; ; i++ {
			if v := atomic.LoadUint64(wt.watched); v != wt.stale { // (C)/(E) acquire
				return v, nil
			}
			if i%32 == 31 {
				if monoNow() >= spinEnd {
					break
				}
				runtime.Gosched()
			}
		}
	}
	if wt.counted {
		// R21: a counted sleeper holds a shared lock on the sleepers' byte while it is counted, so
		// that a writer can tell a count left by sleepers that died from live ones
		if err := c.sleeperEnter(); err != nil {
			return 0, err
		}
		defer c.sleeperLeave()
		atomic.AddUint32(wt.flag, 1) // R21: many sleepers, read-modify-write only
		defer atomic.AddUint32(wt.flag, ^uint32(0))
	} else {
		defer atomic.StoreUint32(wt.flag, 0) // R21: cleared whatever ends the wait
	}
	lastAlive := time.Duration(-1)
	for {
		if !wt.counted {
			atomic.StoreUint32(wt.flag, 1)
		}
		// (R) full fence: the flag store and the loads below are sequentially consistent; pairs with (W)
		seq := atomic.LoadUint32(wt.wake) // (G) acquire: pairs with (F)
		if v := atomic.LoadUint64(wt.watched); v != wt.stale {
			return v, nil
		}
		var end error
		now := monoNow()
		// (L1) acquire: a writer that closed has published everything it will; pairs with (L0)
		if wt.endsOnClose && atomic.LoadUint32(c.u32(offWriterState)) == peerClosed {
			end = ErrEnded
		} else if wt.checkPeer && (lastAlive < 0 || now-lastAlive >= slice) {
			lastAlive = now
			if !c.peerAlive(wt.peerIsWriter) {
				end = errf(ErrPeerDead, "channel %s: the %s died", c.name, map[bool]string{true: "writer", false: "reader"}[wt.peerIsWriter])
			}
		}
		if end != nil {
			// R28, R29: the last commit (or release) came before the close or the death: look again
			if v := atomic.LoadUint64(wt.watched); v != wt.stale {
				return v, nil
			}
			return 0, end
		}
		if timeout == 0 {
			return 0, errNow
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		d := slice
		if ctx.Done() != nil {
			d = ctxSlice
		}
		if timeout > 0 {
			left := deadline - now
			if left <= 0 {
				return 0, errf(ErrTimeout, "channel %s: no change within %v", c.name, timeout)
			}
			if left < d {
				d = left
			}
		}
		if err := futexWait(wt.wake, seq, d); err != nil && !errors.Is(err, ErrTimeout) && !errors.Is(err, unix.EINTR) {
			return 0, err
		}
	}
}

// sleeperEnter: the first counted sleeper of this handle takes the shared lock on the sleepers'
// byte (an OFD lock belongs to the handle's descriptor, not to a goroutine), waiting while a
// writer holds it exclusively to repair the count (microseconds).
func (c *Channel) sleeperEnter() error {
	c.sleepMu.Lock()
	defer c.sleepMu.Unlock()
	if c.sleepers == 0 {
		lk := unix.Flock_t{Type: unix.F_RDLCK, Whence: 0, Start: lockSleepers, Len: 1}
		for {
			err := unix.FcntlFlock(uintptr(c.fd), unix.F_OFD_SETLKW, &lk)
			if err == nil {
				break
			}
			if !errors.Is(err, unix.EINTR) {
				return err
			}
		}
	}
	c.sleepers++
	return nil
}

// sleeperLeave: the last one drops the lock, after its count was subtracted.
func (c *Channel) sleeperLeave() {
	c.sleepMu.Lock()
	defer c.sleepMu.Unlock()
	if c.sleepers--; c.sleepers == 0 {
		unlockByte(c.fd, lockSleepers)
	}
}

// errNow is returned by waitChange for a zero timeout; callers turn it into ErrFull or ErrEmpty.
var errNow = errors.New("would wait")
