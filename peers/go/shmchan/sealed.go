// SPDX-License-Identifier: MIT
//go:build linux && amd64

package shmchan

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Connect attaches to a sealed channel served on the Unix socket at path (R34): it receives one
// byte 'S' with exactly one descriptor, checks that the memfd is sealed against shrinking and
// growing, re-opens it so that its locks are its own, and opens the channel from it.
func Connect(path string, opt OpenOptions) (*Channel, error) {
	timeout := opt.Timeout
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	sock, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("shmchan: socket: %w", err)
	}
	defer unix.Close(sock)
	if err := unix.Connect(sock, &unix.SockaddrUnix{Name: path}); err != nil {
		return nil, sysErr(err, "cannot connect to "+path)
	}
	pfd := []unix.PollFd{{Fd: int32(sock), Events: unix.POLLIN}}
	for deadline := monoNow() + timeout; ; {
		left := deadline - monoNow()
		if left <= 0 {
			return nil, errf(ErrTimeout, "no channel descriptor from %s within %v", path, timeout)
		}
		n, err := unix.Poll(pfd, int(left/time.Millisecond)+1)
		if n > 0 {
			break
		}
		if err != nil && err != unix.EINTR {
			return nil, fmt.Errorf("shmchan: poll: %w", err)
		}
	}
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := unix.Recvmsg(sock, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("shmchan: recvmsg from %s: %w", path, err)
	}
	var fds []int
	if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
		for i := range msgs {
			if got, err := unix.ParseUnixRights(&msgs[i]); err == nil {
				fds = append(fds, got...)
			}
		}
	}
	defer func() {
		for _, fd := range fds {
			_ = unix.Close(fd)
		}
	}()
	if n != 1 || buf[0] != 'S' || len(fds) != 1 {
		return nil, errf(ErrIncompatible, "%s sent %d byte(s) and %d descriptor(s), not 'S' and one", path, n, len(fds))
	}
	seals, err := unix.FcntlInt(uintptr(fds[0]), unix.F_GET_SEALS, 0)
	if err != nil || seals&(unix.F_SEAL_SHRINK|unix.F_SEAL_GROW) != unix.F_SEAL_SHRINK|unix.F_SEAL_GROW {
		return nil, errf(ErrPermission, "the descriptor from %s is not a memfd sealed against shrinking and growing", path)
	}
	// the received descriptor shares the server's open file description, and with it its locks
	own, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", fds[0]), unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("shmchan: re-opening the descriptor: %w", err)
	}
	return attach(own, "memfd:shmchan", true, opt)
}
