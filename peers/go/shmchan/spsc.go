// SPDX-License-Identifier: MIT
//go:build linux && amd64

package shmchan

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"time"
)

const noReservation = -1

// Writer is the one writer of a channel (any kind). Close (or the Channel's Close) detaches it.
type Writer struct {
	c          *Channel
	head       uint64
	cachedTail uint64 // SPSC: the tail last seen; BROADCAST: the floor of the last scan
	reserved   int64
	wakeSeq    uint32
	messages   uint64
	bytes      uint64
	full       uint64
	aborts     uint64
	// Spin is how long a blocked Reserve polls before it sleeps (default 100 µs).
	Spin    time.Duration
	scanSeq uint64
	dead    []deadPlace // BROADCAST: the generation of places found dead
	closed  bool
}

// Writer attaches this handle as the channel's writer (R14); ErrBusy if one is attached anywhere.
func (c *Channel) Writer() (*Writer, error) {
	if err := c.live(); err != nil {
		return nil, err
	}
	if c.writer != nil {
		return nil, errf(ErrBusy, "this handle already has a writer")
	}
	if err := lockByte(c.fd, lockWriter, true); err != nil {
		if errors.Is(err, ErrBusy) {
			return nil, errf(ErrBusy, "channel %s: another writer is attached", c.name)
		}
		return nil, err
	}
	head := atomic.LoadUint64(c.u64(offHead))
	tail := atomic.LoadUint64(c.u64(offTail)) // (E) acquire: pairs with (D)
	if c.g.Kind == KindSPSC && head-tail > uint64(c.g.Capacity) {
		unlockByte(c.fd, lockWriter)
		return nil, c.poison("corrupt positions at writer attach: head %d, tail %d", head, tail)
	}
	if c.g.Kind != KindSPSC && head >= maxPosition {
		unlockByte(c.fd, lockWriter)
		return nil, c.poison("corrupt head %d at writer attach (positions stay below 2^63)", head)
	}
	w := &Writer{c: c, head: head, cachedTail: tail, reserved: noReservation, Spin: DefaultSpin,
		wakeSeq: atomic.LoadUint32(c.u32(offHeadWake)), messages: atomic.LoadUint64(c.u64(offWMessages)),
		bytes: atomic.LoadUint64(c.u64(offWBytes)), full: atomic.LoadUint64(c.u64(offWFull)),
		aborts: atomic.LoadUint64(c.u64(offWAborts))}
	if c.g.Kind == KindBroadcast {
		w.bcInit()
	}
	atomic.StoreUint32(c.u32(offWriterWaiting), 0) // R21: repair a flag a dead predecessor left
	gen := c.u64(offWriterGen)
	atomic.StoreUint64(gen, atomic.LoadUint64(gen)+1)
	atomic.StoreUint32(c.u32(offWriterPid), uint32(os.Getpid()))
	atomic.StoreUint32(c.u32(offWriterState), peerAttached) // (L0) release: pairs with (L1)/(L2)
	c.writer = w
	return w, nil
}

// Close detaches the writer (R16): readers that drain the ring then see the end of the stream.
func (w *Writer) Close() error {
	if w == nil || w.closed {
		return nil
	}
	w.closed = true
	c := w.c
	if c.mem == nil {
		return nil
	}
	if w.reserved != noReservation {
		_ = w.Abort()
	}
	atomic.StoreUint32(c.u32(offWriterState), peerClosed) // (L0) release
	n := 1
	if c.g.Kind != KindSPSC {
		n = wakeAll
	}
	notify(c.u32(offHeadWake), &w.wakeSeq, c.u32(offReaderWaiting), n)
	unlockByte(c.fd, lockWriter)
	c.writer = nil
	return nil
}

// Head is the next position this writer commits (STATE: the current version).
func (w *Writer) Head() uint64 { return w.head }

// Reserve returns a view of the next slot for a message of n bytes, waiting while the ring is
// full (R24, R38). The view is valid until Commit or Abort.
func (w *Writer) Reserve(ctx context.Context, n int, timeout time.Duration) ([]byte, error) {
	c := w.c
	if w.closed {
		return nil, ErrClosed
	}
	if err := c.live(); err != nil {
		return nil, err
	}
	if w.reserved != noReservation {
		return nil, errf(ErrInvalid, "a reservation is open")
	}
	if n < 0 || uint64(n) > c.g.SlotSize {
		return nil, errf(ErrTooLarge, "%d bytes do not fit a slot of %d", n, c.g.SlotSize)
	}
	var s uint32
	switch c.g.Kind {
	case KindBroadcast:
		if err := w.bcMakeRoom(ctx, timeout); err != nil {
			return nil, err
		}
		s = uint32(w.head & uint64(c.g.Capacity-1))
		w.openSlot(s)
	case KindState:
		s = uint32((w.head + 1) & 1) // the slot readers are not sent to (R45)
		w.openSlot(s)
	default:
		capacity := uint64(c.g.Capacity)
		if w.head-w.cachedTail >= capacity {
			tailp := c.u64(offTail)
			tail := atomic.LoadUint64(tailp) // (E) acquire: pairs with (D)
			if w.head-tail >= capacity {
				w.full++
				atomic.StoreUint64(c.u64(offWFull), w.full)
				wt := waiter{watched: tailp, stale: w.head - capacity, wake: c.u32(offTailWake),
					flag: c.u32(offWriterWaiting), checkPeer: true, spin: w.Spin}
				var err error
				tail, err = c.waitChange(ctx, wt, timeout)
				if errors.Is(err, errNow) {
					return nil, errf(ErrFull, "channel %s is full", c.name)
				}
				if err != nil {
					return nil, err
				}
			}
			if w.head-tail > capacity { // the reader's: check before trusting (R3)
				return nil, c.poison("corrupt tail %d for head %d", tail, w.head)
			}
			w.cachedTail = tail
		}
		s = uint32(w.head & uint64(c.g.Capacity-1))
	}
	w.reserved = int64(n)
	return c.slot(s)[:n], nil
}

// Commit publishes the reserved slot with n bytes (n <= the reserved size).
func (w *Writer) Commit(n int) error {
	c := w.c
	if w.reserved == noReservation {
		return errf(ErrInvalid, "nothing reserved")
	}
	if n < 0 || int64(n) > w.reserved {
		return errf(ErrTooLarge, "commit of %d bytes, %d reserved", n, w.reserved)
	}
	if err := c.live(); err != nil {
		return err
	}
	if c.g.Kind != KindSPSC {
		s := uint32(w.head & uint64(c.g.Capacity-1))
		if c.g.Kind == KindState {
			s = uint32((w.head + 1) & 1)
		}
		w.publish(s, uint64(n))
		return nil
	}
	s := uint32(w.head & uint64(c.g.Capacity-1))
	atomic.StoreUint64(c.u64(c.g.LensOffset+8*uint64(s)), uint64(n)) // (A): ordered before (B)
	sync := c.syncFlags()
	if sync != 0 {
		c.syncRange(c.g.DataOffset+uint64(s)*c.g.SlotStride, uint64(n), sync)
	}
	w.head++
	w.reserved = noReservation
	atomic.StoreUint64(c.u64(offHead), w.head) // (B) release: payload and length before head; pairs with (C)
	w.messages++
	w.bytes += uint64(n)
	atomic.StoreUint64(c.u64(offWMessages), w.messages)
	atomic.StoreUint64(c.u64(offWBytes), w.bytes)
	notify(c.u32(offHeadWake), &w.wakeSeq, c.u32(offReaderWaiting), 1)
	if sync != 0 {
		c.syncRange(0, HeaderSize, sync)
	}
	return nil
}

// Abort drops the reservation (R26).
func (w *Writer) Abort() error {
	if w.reserved == noReservation {
		return errf(ErrInvalid, "nothing reserved")
	}
	w.reserved = noReservation
	w.aborts++
	atomic.StoreUint64(w.c.u64(offWAborts), w.aborts)
	return nil
}

// Send copies data into the next slot and commits it.
func (w *Writer) Send(ctx context.Context, data []byte, timeout time.Duration) error {
	buf, err := w.Reserve(ctx, len(data), timeout)
	if err != nil {
		return err
	}
	copy(buf, data)
	return w.Commit(len(data))
}

// Reader is a reader of an SPSC channel (the one reader) or of a BROADCAST channel (one place).
type Reader struct {
	c          *Channel
	tail       uint64
	readPos    uint64
	cachedHead uint64
	released   []bool
	takenLen   []uint64
	wakeSeq    uint32
	messages   uint64
	bytes      uint64
	empty      uint64
	lost       uint64
	place      int // BROADCAST: the place index; -1 for SPSC
	orphanLo   uint64
	orphanHi   uint64
	// Spin is how long a blocked Recv polls before it sleeps (default 100 µs).
	Spin   time.Duration
	closed bool
}

// Message is a received message: Data is a read-only view of the slot (do not write to it),
// valid until Release. Lost counts the messages skipped just before this one (overwrite policy).
type Message struct {
	Pos  uint64
	Data []byte
	Lost uint64
}

// Reader attaches this handle as a reader: SPSC the one reader (R15), BROADCAST a reader place
// starting at the newest message (R35); use BroadcastReader for the oldest.
func (c *Channel) Reader() (*Reader, error) {
	return c.reader0(false)
}

func (c *Channel) reader0(oldest bool) (*Reader, error) {
	if err := c.live(); err != nil {
		return nil, err
	}
	if c.reader != nil {
		return nil, errf(ErrBusy, "this handle already has a reader")
	}
	if c.g.Kind == KindState {
		return nil, errf(ErrInvalid, "a board has no reader: use Board")
	}
	r := &Reader{c: c, released: make([]bool, c.g.Capacity), takenLen: make([]uint64, c.g.Capacity), place: -1,
		Spin: DefaultSpin}
	if c.g.Kind == KindBroadcast {
		if err := r.join(oldest); err != nil {
			return nil, err
		}
		c.reader = r
		return r, nil
	}
	if err := lockByte(c.fd, lockReader, true); err != nil {
		if errors.Is(err, ErrBusy) {
			return nil, errf(ErrBusy, "channel %s: another reader is attached", c.name)
		}
		return nil, err
	}
	tail := atomic.LoadUint64(c.u64(offTail))
	head := atomic.LoadUint64(c.u64(offHead)) // (C) acquire: pairs with (B)
	if head-tail > uint64(c.g.Capacity) {
		unlockByte(c.fd, lockReader)
		return nil, c.poison("corrupt positions at reader attach: head %d, tail %d", head, tail)
	}
	r.tail, r.readPos, r.cachedHead = tail, tail, head
	r.messages = atomic.LoadUint64(c.u64(offRMessages))
	r.bytes = atomic.LoadUint64(c.u64(offRBytes))
	r.empty = atomic.LoadUint64(c.u64(offREmpty))
	r.wakeSeq = atomic.LoadUint32(c.u32(offTailWake))
	atomic.StoreUint32(c.u32(offReaderWaiting), 0) // R21
	gen := c.u64(offReaderGen)
	atomic.StoreUint64(gen, atomic.LoadUint64(gen)+1)
	atomic.StoreUint32(c.u32(offReaderPid), uint32(os.Getpid()))
	atomic.StoreUint32(c.u32(offReaderState), peerAttached) // (L0) release
	c.reader = r
	return r, nil
}

// Close detaches the reader (R16, R36). Unreleased SPSC messages are delivered again to the next reader.
func (r *Reader) Close() error {
	if r == nil || r.closed {
		return nil
	}
	r.closed = true
	c := r.c
	if c.mem != nil {
		if r.place >= 0 {
			r.leave()
		} else {
			atomic.StoreUint32(c.u32(offReaderState), peerClosed) // (L0) release
			unlockByte(c.fd, lockReader)
		}
	}
	c.reader = nil
	return nil
}

// Lost is the total of messages this reader lost to the writer lapping it (overwrite policy).
func (r *Reader) Lost() uint64 { return r.lost }

// Position is the next position this reader takes.
func (r *Reader) Position() uint64 { return r.readPos }

// acceptHead checks a head loaded from the writer before caching it (R25, R42).
func (r *Reader) acceptHead(head uint64) error {
	c := r.c
	laps := c.g.Kind == KindBroadcast && c.g.Policy == PolicyOverwrite
	if head-r.readPos >= 1<<63 || (!laps && head-r.tail > uint64(c.g.Capacity)) {
		return c.poison("corrupt head %d for tail %d, read position %d", head, r.tail, r.readPos)
	}
	r.cachedHead = head
	return nil
}

// ensure makes sure a message is past readPos, waiting if needed (R25 step 1).
func (r *Reader) ensure(ctx context.Context, timeout time.Duration) error {
	c := r.c
	if err := c.live(); err != nil {
		return err
	}
	if r.readPos != r.cachedHead {
		return nil
	}
	headp := c.u64(offHead)
	head := atomic.LoadUint64(headp) // (C) acquire: pairs with (B)
	if head == r.readPos {
		if r.readPos-r.tail == uint64(c.g.Capacity) {
			return errf(ErrPinned, "release a message first") // R27
		}
		r.empty++
		if r.place >= 0 {
			atomic.StoreUint64(r.placeField(placeEmpty), r.empty)
		} else {
			atomic.StoreUint64(c.u64(offREmpty), r.empty)
		}
		wt := waiter{watched: headp, stale: r.readPos, wake: c.u32(offHeadWake), flag: c.u32(offReaderWaiting),
			counted: r.place >= 0, endsOnClose: true, peerIsWriter: true, checkPeer: true, spin: r.Spin}
		var err error
		head, err = c.waitChange(ctx, wt, timeout)
		if errors.Is(err, errNow) {
			return errf(ErrEmpty, "channel %s is empty", c.name)
		}
		if err != nil {
			return err
		}
	}
	return r.acceptHead(head)
}

// Recv returns the next message without copying it (R25, R42); release it with Release.
func (r *Reader) Recv(ctx context.Context, timeout time.Duration) (Message, error) {
	if r.closed {
		return Message{}, ErrClosed
	}
	if r.place >= 0 {
		return r.bcRecv(ctx, timeout)
	}
	if err := r.ensure(ctx, timeout); err != nil {
		return Message{}, err
	}
	c := r.c
	s := uint32(r.readPos & uint64(c.g.Capacity-1))
	n := atomic.LoadUint64(c.u64(c.g.LensOffset + 8*uint64(s))) // read once, check, use the local (R3)
	if n > c.g.SlotSize {
		return Message{}, c.poison("corrupt length %d in slot %d (slot size %d)", n, s, c.g.SlotSize)
	}
	m := Message{Pos: r.readPos, Data: c.slot(s)[:n:n]}
	r.takenLen[s] = n
	r.readPos++
	return m, nil
}

// Release hands a received message back (R25 step 3, R44). On a BROADCAST overwrite channel it
// returns ErrLapped when the writer rewrote the slot while it was held (the message still counts
// as released, and as lost).
func (r *Reader) Release(m Message) error {
	c := r.c
	if err := c.live(); err != nil {
		return err
	}
	if r.place >= 0 {
		return r.bcRelease(m.Pos)
	}
	mask := uint64(c.g.Capacity - 1)
	if m.Pos-r.tail >= r.readPos-r.tail || r.released[m.Pos&mask] {
		return errf(ErrInvalid, "position %d is not held", m.Pos)
	}
	if r.markReleased(m.Pos) == r.tail {
		return nil
	}
	atomic.StoreUint64(c.u64(offTail), r.tail) // (D) release: our reads before the writer reuses the slot; pairs with (E)
	atomic.StoreUint64(c.u64(offRMessages), r.messages)
	atomic.StoreUint64(c.u64(offRBytes), r.bytes)
	notify(c.u32(offTailWake), &r.wakeSeq, c.u32(offWriterWaiting), 1)
	return nil
}

// markReleased marks pos released and moves the private tail over the contiguous run of released
// positions (R25 step 3); it returns the tail before the move.
func (r *Reader) markReleased(pos uint64) uint64 {
	mask := uint64(r.c.g.Capacity - 1)
	r.released[pos&mask] = true
	old := r.tail
	for r.tail != r.readPos && r.released[r.tail&mask] {
		r.released[r.tail&mask] = false
		r.bytes += r.takenLen[r.tail&mask]
		r.messages++
		r.tail++
	}
	return old
}

// RecvBytes copies the next message out and releases it; on an overwrite channel it never
// returns a torn copy (R43).
func (r *Reader) RecvBytes(ctx context.Context, timeout time.Duration) ([]byte, uint64, error) {
	var lost uint64
	for {
		m, err := r.Recv(ctx, timeout)
		if err != nil {
			return nil, lost, err
		}
		lost += m.Lost
		out := append([]byte(nil), m.Data...)
		err = r.Release(m)
		if errors.Is(err, ErrLapped) {
			continue // counted lost; take the next
		}
		return out, lost, err
	}
}
