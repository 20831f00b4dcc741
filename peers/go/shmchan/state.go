// SPDX-License-Identifier: MIT
//go:build linux && amd64

package shmchan

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"time"
)

// Board reads a STATE channel (R46); any number of Boards, in any processes, read one board.
// Publish with the channel's Writer (Send, or Reserve/Commit): every publish is the next version.
type Board struct{ c *Channel }

// Board returns a reader of this STATE channel.
func (c *Channel) Board() (*Board, error) {
	if c.g.Kind != KindState {
		return nil, errf(ErrIncompatible, "channel %s is a %s channel, not a state board", c.name, c.g.Kind)
	}
	return &Board{c: c}, nil
}

// Version is the newest version (0: no value yet).
func (b *Board) Version() uint64 { return atomic.LoadUint64(b.c.u64(offHead)) } // (C) acquire

// Read copies the newest value into buf (grown as needed) and returns it with its version, never
// torn (R46). ErrNoData before the first publish.
func (b *Board) Read(buf []byte) ([]byte, uint64, error) {
	c := b.c
	if err := c.live(); err != nil {
		return nil, 0, err
	}
	for tries := 0; tries < 10000; tries++ {
		v := atomic.LoadUint64(c.u64(offHead)) // (C) acquire: pairs with (B)
		if v == 0 {
			return nil, 0, ErrNoData
		}
		if tries >= 16 {
			runtime.Gosched() // a writer on our CPU must get to finish
		}
		seqp, lnp := c.meta(uint32(v & 1))
		if atomic.LoadUint64(seqp) != v { // (M4) acquire: pairs with (M2)
			continue
		}
		n := atomic.LoadUint64(lnp)
		if n > c.g.SlotSize {
			if atomic.LoadUint64(seqp) != v { // (M3)
				continue
			}
			return nil, 0, c.poison("corrupt length %d of state version %d (maximum %d)", n, v, c.g.SlotSize)
		}
		buf = append(buf[:0], c.slot(uint32(v & 1))[:n]...)
		// (M3) acquire: the copy's loads stay before this load on x86-64; pairs with (M1)
		if atomic.LoadUint64(seqp) == v {
			return buf, v, nil
		}
	}
	return nil, 0, errf(ErrBusy, "channel %s: the writer replaced the value faster than it could be copied", c.name)
}

// WaitForChange sleeps until the version differs from version and returns the new one (R46). A
// board whose writer closed keeps waiting; ErrPeerDead when the writer died attached.
func (b *Board) WaitForChange(ctx context.Context, version uint64, timeout time.Duration) (uint64, error) {
	c := b.c
	if err := c.live(); err != nil {
		return 0, err
	}
	wt := waiter{watched: c.u64(offHead), stale: version, wake: c.u32(offHeadWake), flag: c.u32(offReaderWaiting),
		counted: true, peerIsWriter: true, checkPeer: true}
	v, err := c.waitChange(ctx, wt, timeout)
	if errors.Is(err, errNow) {
		return version, errf(ErrTimeout, "channel %s: version %d unchanged", c.name, version)
	}
	return v, err
}
