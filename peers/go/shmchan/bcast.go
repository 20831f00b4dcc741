// SPDX-License-Identifier: MIT
//go:build linux && amd64

package shmchan

import (
	"context"
	"errors"
	"os"
	"runtime"
	"sync/atomic"
	"time"
)

const (
	joinPatience = 10 * time.Millisecond // R35: then look whether the writer is dead or gone
	joinGiveUp   = time.Second           // R35: a live writer still scanning after this is stopped or broken
)

func (c *Channel) meta(s uint32) (seq, ln *uint64) {
	off := c.g.LensOffset + 16*uint64(s)
	return c.u64(off), c.u64(off + 8)
}

func (c *Channel) placeOff(i int) uint64 { return c.g.ReadersOffset + PlaceSize*uint64(i) }

func (r *Reader) placeField(f uint64) *uint64 { return r.c.u64(r.c.placeOff(r.place) + f) }

// placeAlive: the owner of place i holds its lock byte (R12); this handle's own reader is alive.
func (c *Channel) placeAlive(i int) bool {
	if c.reader != nil && c.reader.place == i {
		return true
	}
	return byteLocked(c.fd, int64(lockReaders+i))
}

// ---- writer ----

// deadPlace: a place found dead in generation gen (a flag, not a reserved generation: a peer may
// write any generation, 2^64-1 included).
type deadPlace struct {
	gen   uint64
	known bool
}

func (w *Writer) bcInit() {
	c := w.c
	w.dead = make([]deadPlace, c.g.MaxReaders)
	// R37: a predecessor may have died mid-scan (odd): start from the next even value
	w.scanSeq = (atomic.LoadUint64(c.u64(offScanSeq)) + 1) &^ 1
	floor := atomic.LoadUint64(c.u64(offFloor))
	if w.head-floor > uint64(c.g.Capacity) {
		floor = w.head - uint64(c.g.Capacity)
	}
	w.cachedTail = floor
	if c.g.Policy == PolicyBlock {
		w.scan()
	}
}

// scan recomputes the floor (R39).
func (w *Writer) scan() {
	c := w.c
	old, m := w.cachedTail, w.head
	w.scanSeq++
	atomic.StoreUint64(c.u64(offScanSeq), w.scanSeq)
	// (J2) full fence: the odd scan_seq (sequentially consistent) before the cursor loads; pairs with (J1)
	for i := 0; i < int(c.g.MaxReaders); i++ {
		p := c.placeOff(i)
		if atomic.LoadUint32(c.u32(p+placeState)) != peerAttached { // (L3) acquire: pairs with (L0)
			continue
		}
		gen := atomic.LoadUint64(c.u64(p + placeGen))
		if d := w.dead[i]; d.known && d.gen == gen {
			continue // found dead before, and nobody took the place since (R41)
		}
		cur := atomic.LoadUint64(c.u64(p + placeCursor)) // (E2) acquire: pairs with (D2)
		if cur-old > w.head-old {
			if old-cur < 1<<63 {
				cur = old // a joiner below the floor: it raises itself
			} else {
				cur = w.head // beyond head: nonsense
			}
		}
		if cur-old < m-old {
			m = cur
		}
	}
	atomic.StoreUint64(c.u64(offFloor), m)
	w.scanSeq++
	atomic.StoreUint64(c.u64(offScanSeq), w.scanSeq) // (J3) release: the floor before the even value; pairs with (J4)
	w.cachedTail = m
}

func (w *Writer) isFull() bool { return w.head-w.cachedTail >= uint64(w.c.g.Capacity) }

// buryDead marks places whose dead owner holds the writer back (R41).
func (w *Writer) buryDead() {
	c := w.c
	for i := 0; i < int(c.g.MaxReaders); i++ {
		p := c.placeOff(i)
		if atomic.LoadUint32(c.u32(p+placeState)) != peerAttached {
			continue
		}
		g1 := atomic.LoadUint64(c.u64(p + placeGen))
		cur := atomic.LoadUint64(c.u64(p + placeCursor))
		if d := w.dead[i]; (d.known && d.gen == g1) || w.head-cur < uint64(c.g.Capacity) || c.placeAlive(i) {
			continue
		}
		if atomic.LoadUint32(c.u32(p+placeState)) == peerAttached && atomic.LoadUint64(c.u64(p+placeGen)) == g1 {
			w.dead[i] = deadPlace{gen: g1, known: true}
		}
	}
}

// bcMakeRoom: block policy, wait until the slowest live reader frees the slot (R38 step 1, R40).
func (w *Writer) bcMakeRoom(ctx context.Context, timeout time.Duration) error {
	c := w.c
	if c.g.Policy == PolicyOverwrite || !w.isFull() {
		return nil
	}
	w.scan()
	if !w.isFull() {
		return nil
	}
	w.full++
	atomic.StoreUint64(c.u64(offWFull), w.full)
	start := monoNow()
	if timeout != 0 && w.Spin > 0 {
		for end := start + w.Spin; monoNow() < end && (timeout < 0 || monoNow() < start+timeout); {
			runtime.Gosched()
			w.scan()
			if !w.isFull() {
				return nil
			}
		}
	}
	w.buryDead()
	atomic.StoreUint64(c.u64(offNeed), w.head-uint64(c.g.Capacity)+1)
	flag, wake := c.u32(offWriterWaiting), c.u32(offTailWake)
	defer atomic.StoreUint32(flag, 0)
	lastBury := monoNow()
	for {
		atomic.StoreUint32(flag, 1)
		// (R) full fence (sequentially consistent store and load); pairs with (W) in a reader's release
		seq := atomic.LoadUint32(wake) // (G) acquire
		w.scan()
		if !w.isFull() {
			return nil
		}
		now := monoNow()
		if timeout == 0 {
			return errf(ErrFull, "channel %s: the slowest reader holds every slot", c.name)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		d := slice
		if ctx.Done() != nil {
			d = ctxSlice
		}
		if timeout > 0 {
			left := start + timeout - now
			if left <= 0 {
				return errf(ErrTimeout, "channel %s: the readers freed no slot within %v", c.name, timeout)
			}
			d = min(d, left)
		}
		_ = futexWait(wake, seq, d)
		if monoNow()-lastBury >= slice {
			lastBury = monoNow()
			w.buryDead()
		}
	}
}

// openSlot stamps slot s as being rewritten (R38 step 2).
func (w *Writer) openSlot(s uint32) {
	seq, _ := w.c.meta(s)
	// (M1) the stamp (sequentially consistent) before any payload store; payload stores stay in order on x86-64
	atomic.StoreUint64(seq, seqWriting)
}

// publish: BROADCAST position head, or STATE version head + 1 (R38 step 3, R45).
func (w *Writer) publish(s uint32, n uint64) {
	c := w.c
	seq, ln := c.meta(s)
	atomic.StoreUint64(ln, n)
	sync := c.syncFlags()
	if sync != 0 {
		c.syncRange(c.g.DataOffset+uint64(s)*c.g.SlotStride, n, sync)
	}
	atomic.StoreUint64(seq, w.head+1) // (M2) release: payload and length before the sequence; pairs with (M4)
	w.head++
	w.reserved = noReservation
	atomic.StoreUint64(c.u64(offHead), w.head) // (B) release: pairs with (C)
	w.messages++
	w.bytes += n
	atomic.StoreUint64(c.u64(offWMessages), w.messages)
	atomic.StoreUint64(c.u64(offWBytes), w.bytes)
	notify(c.u32(offHeadWake), &w.wakeSeq, c.u32(offReaderWaiting), wakeAll)
	if sync != 0 {
		c.syncRange(0, HeaderSize, sync)
	}
}

// ---- reader ----

// BroadcastReader takes a reader place of a BROADCAST channel (R35), starting at the newest
// message already sent (oldest false) or the oldest one still in the ring.
func (c *Channel) BroadcastReader(oldest bool) (*Reader, error) {
	if c.g.Kind != KindBroadcast {
		return nil, errf(ErrIncompatible, "channel %s is a %s channel", c.name, c.g.Kind)
	}
	return c.reader0(oldest)
}

func (r *Reader) join(oldest bool) error {
	c := r.c
	i, err := 0, ErrBusy
	for ; i < int(c.g.MaxReaders); i++ {
		if err = lockByte(c.fd, int64(lockReaders+i), true); !errors.Is(err, ErrBusy) {
			break
		}
	}
	if errors.Is(err, ErrBusy) {
		return errf(ErrBusy, "channel %s: all %d reader places are taken", c.name, c.g.MaxReaders)
	}
	if err != nil {
		return err
	}
	r.place = i
	head := atomic.LoadUint64(c.u64(offHead)) // (C) acquire
	if head >= maxPosition {
		unlockByte(c.fd, int64(lockReaders+i))
		return c.poison("corrupt head %d at reader attach (positions stay below 2^63)", head)
	}
	capacity := uint64(c.g.Capacity)
	var start uint64
	switch {
	case oldest && head >= capacity:
		start = head - capacity
	case !oldest && head > 0:
		start = head - 1
	}
	p := c.placeOff(i)
	gen := atomic.LoadUint64(c.u64(p+placeGen)) + 1
	atomic.StoreUint64(c.u64(p+placeCursor), start)
	atomic.StoreUint64(c.u64(p+placeGen), gen)
	atomic.StoreUint32(c.u32(p+placePid), uint32(os.Getpid()))
	for _, f := range []uint64{placeMessages, placeBytes, placeLost, placeEmpty} {
		atomic.StoreUint64(c.u64(p+f), 0) // a joiner resets its place's statistics
	}
	atomic.StoreUint32(c.u32(p+placeState), peerAttached) // (L0) release, then (J1) full fence (seq_cst)
	if c.g.Policy == PolicyBlock {
		t0 := monoNow()
		for atomic.LoadUint64(c.u64(offScanSeq))&1 == 1 { // (J4) acquire: pairs with (J3)
			waited := monoNow() - t0
			if waited < joinPatience {
				runtime.Gosched()
				continue
			}
			ws := atomic.LoadUint32(c.u32(offWriterState))
			if ws != peerAttached || !c.peerAlive(true) {
				break // no live writer: the next one scans afresh from the floor
			}
			if waited >= joinGiveUp { // R35: a live writer scanning this long is stopped or broken
				atomic.StoreUint32(c.u32(p+placeState), peerClosed) // (L0) release
				unlockByte(c.fd, int64(lockReaders+i))
				return errf(ErrTimeout, "channel %s: the writer has been scanning the reader places for over %v "+
					"(scan_seq stays odd): it is stopped or broken, or a peer wrote scan_seq", c.name, joinGiveUp)
			}
			time.Sleep(time.Millisecond)
		}
		if f := atomic.LoadUint64(c.u64(offFloor)); f-start < 1<<63 {
			start = f
		}
		atomic.StoreUint64(c.u64(p+placeCursor), start) // (D2) release: pairs with (E2)
	}
	if h := atomic.LoadUint64(c.u64(offHead)); start-h < 1<<63 && start != h {
		atomic.StoreUint32(c.u32(p+placeState), peerClosed)
		unlockByte(c.fd, int64(lockReaders+i))
		return c.poison("corrupt floor %d above head %d", start, h)
	}
	r.tail, r.readPos, r.cachedHead = start, start, start
	return nil
}

// leave: R36.
func (r *Reader) leave() {
	c := r.c
	atomic.StoreUint32(c.u32(c.placeOff(r.place)+placeState), peerClosed) // (L0) release
	unlockByte(c.fd, int64(lockReaders+r.place))
	// (W) full fence (sequentially consistent): pairs with (R) in the writer's wait
	if atomic.LoadUint32(c.u32(offWriterWaiting)) != 0 {
		wakeWriter(c)
	}
}

// wakeWriter: many readers bump tail_wake, so add (R20).
func wakeWriter(c *Channel) {
	atomic.AddUint32(c.u32(offTailWake), 1)
	futexWake(c.u32(offTailWake), 1)
}

// skip: the writer lapped us (R42 step 4).
func (r *Reader) skip(pending *uint64) {
	c := r.c
	to := r.cachedHead - uint64(c.g.Capacity)
	if to-r.readPos >= 1<<63 || to == r.readPos {
		to = r.readPos + 1
	}
	n := to - r.readPos
	r.lost += n
	*pending += n
	if r.readPos != r.tail {
		mask := uint64(c.g.Capacity - 1)
		for q := r.tail; q != r.readPos; q++ {
			if !r.released[q&mask] {
				r.lost++
			}
		}
		if r.orphanHi == r.orphanLo {
			r.orphanLo = r.tail
		}
		r.orphanHi = r.readPos
		clear(r.released)
	}
	atomic.StoreUint64(r.placeField(placeLost), r.lost)
	r.tail, r.readPos = to, to
	atomic.StoreUint64(r.placeField(placeCursor), to) // (D2) release
}

func (r *Reader) bcRecv(ctx context.Context, timeout time.Duration) (Message, error) {
	c := r.c
	over := c.g.Policy == PolicyOverwrite
	capacity := uint64(c.g.Capacity)
	var pending uint64
	for {
		if err := r.ensure(ctx, timeout); err != nil {
			return Message{}, err
		}
		if r.readPos-r.tail >= capacity { // R42 step 5
			lapped := false
			if over {
				if err := r.acceptHead(atomic.LoadUint64(c.u64(offHead))); err != nil {
					return Message{}, err
				}
				lapped = r.cachedHead-r.readPos > capacity
			}
			if !lapped {
				return Message{}, errf(ErrPinned, "release a message first")
			}
		}
		pos := r.readPos
		if over && r.cachedHead-pos > capacity {
			r.skip(&pending)
			continue
		}
		s := uint32(pos & (capacity - 1))
		seqp, lnp := c.meta(s)
		seq := atomic.LoadUint64(seqp) // (M4) acquire: pairs with (M2)
		n := atomic.LoadUint64(lnp)
		if seq != pos+1 || n > c.g.SlotSize {
			if over {
				head := atomic.LoadUint64(c.u64(offHead)) // (C) acquire
				if head != r.cachedHead {
					if err := r.acceptHead(head); err != nil {
						return Message{}, err
					}
					r.skip(&pending)
					continue
				}
				if (seq == seqWriting || seq == pos+capacity+1) && pos+capacity == head {
					r.skip(&pending)
					continue
				}
			}
			return Message{}, c.poison("corrupt slot %d: sequence %d, length %d, expected position %d", s, seq, n, pos)
		}
		r.takenLen[s] = n
		r.readPos++
		return Message{Pos: pos, Data: c.slot(s)[:n:n], Lost: pending}, nil
	}
}

func (r *Reader) orphan(pos uint64) bool { return pos-r.orphanLo < r.orphanHi-r.orphanLo }

// Check says whether a held message is still intact (R43): nil, or ErrLapped when the writer
// rewrote its slot (overwrite policy). Read the payload first, then check.
func (r *Reader) Check(m Message) error {
	c := r.c
	if r.place < 0 || c.g.Policy != PolicyOverwrite {
		return nil
	}
	if r.orphan(m.Pos) {
		return errf(ErrLapped, "position %d was overwritten", m.Pos)
	}
	seq, _ := c.meta(uint32(m.Pos & uint64(c.g.Capacity-1)))
	// (M3) acquire: the payload reads before this load stay before it on x86-64; pairs with (M1)
	if atomic.LoadUint64(seq) != m.Pos+1 {
		return errf(ErrLapped, "position %d was overwritten while held", m.Pos)
	}
	return nil
}

func (r *Reader) bcRelease(pos uint64) error {
	c := r.c
	mask := uint64(c.g.Capacity - 1)
	if r.orphan(pos) {
		return errf(ErrLapped, "position %d was overwritten", pos)
	}
	if pos-r.tail >= r.readPos-r.tail || r.released[pos&mask] {
		return errf(ErrInvalid, "position %d is not held", pos)
	}
	stale := r.Check(Message{Pos: pos})
	if old := r.markReleased(pos); old != r.tail {
		atomic.StoreUint64(r.placeField(placeCursor), r.tail) // (D2) release: pairs with (E2)
		atomic.StoreUint64(r.placeField(placeMessages), r.messages)
		atomic.StoreUint64(r.placeField(placeBytes), r.bytes)
		if c.g.Policy == PolicyBlock {
			// (W) full fence (sequentially consistent); wake only if we were below what the writer needs (R44)
			if atomic.LoadUint32(c.u32(offWriterWaiting)) != 0 && atomic.LoadUint64(c.u64(offNeed))-old-1 < 1<<63 {
				wakeWriter(c)
			}
		}
	}
	if stale != nil {
		r.lost++
		atomic.StoreUint64(r.placeField(placeLost), r.lost)
	}
	return stale
}

// Place is a snapshot of a BROADCAST reader place, for monitoring.
type Place struct {
	Index                         int
	State, Pid                    uint32
	Alive                         bool
	Cursor, Messages, Bytes, Lost uint64
}

// Places lists the reader places of a BROADCAST channel (nil for the other kinds).
func (c *Channel) Places() []Place {
	if c.g.Kind != KindBroadcast || c.mem == nil {
		return nil
	}
	out := make([]Place, c.g.MaxReaders)
	for i := range out {
		p := c.placeOff(i)
		out[i] = Place{Index: i, State: atomic.LoadUint32(c.u32(p + placeState)), Pid: atomic.LoadUint32(c.u32(p + placePid)),
			Cursor: atomic.LoadUint64(c.u64(p + placeCursor)), Messages: atomic.LoadUint64(c.u64(p + placeMessages)),
			Bytes: atomic.LoadUint64(c.u64(p + placeBytes)), Lost: atomic.LoadUint64(c.u64(p + placeLost))}
		out[i].Alive = out[i].State == peerAttached && c.placeAlive(i)
	}
	return out
}
