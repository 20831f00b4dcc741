// SPDX-License-Identifier: MIT
//go:build linux && amd64

package shmchan

import (
	"errors"
	"math"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Shared fields are reached through typed pointers into the mapping; every access is a sync/atomic
// call (R1).
func (c *Channel) u64(off uint64) *uint64 { return (*uint64)(unsafe.Pointer(&c.mem[off])) }
func (c *Channel) u32(off uint64) *uint32 { return (*uint32)(unsafe.Pointer(&c.mem[off])) }

// lockByte takes an OFD lock on one byte without waiting: nil, ErrBusy when another holder
// conflicts, or the system error.
func lockByte(fd int, off int64, exclusive bool) error {
	t := int16(unix.F_RDLCK)
	if exclusive {
		t = unix.F_WRLCK
	}
	lk := unix.Flock_t{Type: t, Whence: 0, Start: off, Len: 1}
	err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk)
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
		return ErrBusy
	}
	return err
}

func unlockByte(fd int, off int64) {
	lk := unix.Flock_t{Type: unix.F_UNLCK, Whence: 0, Start: off, Len: 1}
	_ = unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk)
}

// byteLocked says whether another open file description holds any lock on the byte (R12); when
// the question cannot be answered it says yes: never declare a live peer dead.
func byteLocked(fd int, off int64) bool {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: off, Len: 1}
	if err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_GETLK, &lk); err != nil {
		return true
	}
	return lk.Type != unix.F_UNLCK
}

// futexWait sleeps while *word == val, at most d (R19: shared futex). It returns nil when woken or
// when the word already differs, ErrTimeout after d, or unix.EINTR.
func futexWait(word *uint32, val uint32, d time.Duration) error {
	ts := unix.NsecToTimespec(int64(d))
	_, _, e := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(word)), futexWaitOp,
		uintptr(val), uintptr(unsafe.Pointer(&ts)), 0, 0)
	switch e {
	case 0, unix.EAGAIN:
		return nil
	case unix.ETIMEDOUT:
		return ErrTimeout
	case unix.EINTR:
		return unix.EINTR
	}
	return e
}

// futexWake wakes up to n sleepers on word (R20).
func futexWake(word *uint32, n int) {
	_, _, _ = unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(word)), futexWakeOp, uintptr(n),
		0, 0, 0)
}

const (
	wakeAll     = math.MaxInt32
	futexWaitOp = 0 // FUTEX_WAIT, shared (no FUTEX_PRIVATE_FLAG): the waker is another process (R19)
	futexWakeOp = 1 // FUTEX_WAKE
)

// notify bumps a wake count with a private copy (one owner, R20), then wakes the sleepers if the
// flag or count says any may sleep. seq_cst atomics give F (release), W (full fence) and the flag
// load in that order.
func notify(word *uint32, seq *uint32, flag *uint32, n int) {
	*seq++
	atomic.StoreUint32(word, *seq) // (F) release: pairs with (G)
	// (W) full fence: the store above and this load are both sequentially consistent; pairs with (R)
	if atomic.LoadUint32(flag) != 0 {
		futexWake(word, n)
	}
}

func monoNow() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}

// mapAligned maps size bytes of fd read/write and shared at an address aligned to align (slots
// aligned beyond the page size must be aligned in memory too, R10). The mapping lives outside the
// Go heap; unmap releases it.
func mapAligned(fd int, size uint64, align uint32) ([]byte, error) {
	const prot = unix.PROT_READ | unix.PROT_WRITE
	n := uintptr(size)
	if uint64(align) <= uint64(unix.Getpagesize()) {
		p, err := unix.MmapPtr(fd, 0, nil, n, prot, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return nil, err
		}
		return unsafe.Slice((*byte)(p), int(n)), nil
	}
	// reserve size + align of address space, map the object over an aligned part of it, give back the rest
	a := uintptr(align)
	res, err := unix.MmapPtr(-1, 0, nil, n+a, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, err
	}
	skip := (a - uintptr(res)%a) % a
	at := unsafe.Add(res, skip)
	p, err := unix.MmapPtr(fd, 0, at, n, prot, unix.MAP_SHARED|unix.MAP_POPULATE|unix.MAP_FIXED)
	if err != nil {
		_ = unix.MunmapPtr(res, n+a)
		return nil, err
	}
	if skip > 0 {
		_ = unix.MunmapPtr(res, skip)
	}
	if tail := a - skip; tail > 0 {
		_ = unix.MunmapPtr(unsafe.Add(p, n), tail)
	}
	return unsafe.Slice((*byte)(p), int(n)), nil
}

func unmap(mem []byte) {
	if len(mem) > 0 {
		_ = unix.MunmapPtr(unsafe.Pointer(&mem[0]), uintptr(len(mem)))
	}
}
