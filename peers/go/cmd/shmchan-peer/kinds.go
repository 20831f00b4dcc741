// SPDX-License-Identifier: MIT
//go:build linux && amd64

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/shmchan/shmchan/peers/go/shmchan"
)

// ---- broadcast messages: seq has 2 + seq % (slot_size/8 - 1) u64 words, word 0 seq, word j (seq + j) * K ----

const msgK = 0x9E3779B97F4A7C15

func msgLen(seq, slotSize uint64) int {
	words := max(slotSize/8, 2)
	return int(8 * (2 + seq%(words-1)))
}

func msgWord(seq uint64, j int) uint64 {
	if j == 0 {
		return seq
	}
	return (seq + uint64(j)) * msgK
}

func msgFill(b []byte, seq uint64) {
	for j := 0; j < len(b)/8; j++ {
		binary.LittleEndian.PutUint64(b[8*j:], msgWord(seq, j))
	}
}

func msgVerify(b []byte, slotSize uint64) (uint64, string) {
	if len(b) < 16 || len(b)%8 != 0 {
		return 0, fmt.Sprintf("a message of %d bytes", len(b))
	}
	seq := binary.LittleEndian.Uint64(b)
	if len(b) != msgLen(seq, slotSize) {
		return seq, fmt.Sprintf("message %d has %d bytes, expected %d", seq, len(b), msgLen(seq, slotSize))
	}
	for j := 0; j < len(b)/8; j++ {
		if binary.LittleEndian.Uint64(b[8*j:]) != msgWord(seq, j) {
			return seq, fmt.Sprintf("message %d: word %d is wrong", seq, j)
		}
	}
	return seq, ""
}

func countError(errs *int64, why string) {
	*errs++
	if *errs <= 10 {
		fmt.Fprintln(os.Stderr, "error:", why)
	}
}

func openKind(name string, kind shmchan.Kind) *shmchan.Channel {
	ch, err := openAny(name, 5*time.Second)
	if err != nil {
		die(err, "cannot open channel")
	}
	if ch.Kind() != kind {
		fmt.Printf("error incompatible: channel %s is a %s channel, not %s\n", name, ch.Kind(), kind)
		os.Exit(3)
	}
	return ch
}

func policyOf(f flags) int {
	switch f.str("policy", "") {
	case "":
		return -1
	case "block":
		return int(shmchan.PolicyBlock)
	case "overwrite":
		return int(shmchan.PolicyOverwrite)
	}
	usage()
	return 0
}

func attachedReaders(ch *shmchan.Channel) uint32 {
	n := uint32(0)
	for _, p := range ch.Places() {
		if p.State == 1 {
			n++
		}
	}
	return n
}

func bcastWriter(f flags) int {
	slotSize, capacity := f.u64("slot-size", 512), uint32(f.u64("capacity", 8))
	n, wantReaders, interval := f.u64("messages", 1000), uint32(f.u64("wait-readers", 0)), f.u64("interval-us", 0)
	timeout := f.timeout(60)
	var ch *shmchan.Channel
	if f.set["create"] {
		pol := policyOf(f)
		if pol < 0 {
			pol = 0
		}
		info := shmchan.ChannelInfo{Kind: shmchan.KindBroadcast, SlotSize: slotSize, Capacity: capacity, SlotAlign: 4096,
			Metadata: map[string]string{"pattern": "interop-words"}}
		var err error
		ch, err = createAny(f.name, shmchan.Config{Kind: shmchan.KindBroadcast, SlotSize: slotSize, Capacity: capacity,
			SlotAlign: 4096, MaxReaders: uint32(f.u64("max-readers", 8)), Policy: shmchan.Policy(pol),
			Descriptor: shmchan.BuildChannelInfo(info)})
		if err != nil {
			die(err, "cannot create channel")
		}
	} else {
		ch = openKind(f.name, shmchan.KindBroadcast)
	}
	slotSize = ch.Geometry().SlotSize
	w, err := ch.Writer()
	if err != nil {
		die(err, "cannot attach a writer")
	}
	ready("")
	t0 := time.Now()
	for attachedReaders(ch) < wantReaders {
		if timeout >= 0 && time.Since(t0) > timeout {
			fmt.Printf("error timeout: %d of %d readers attached\n", attachedReaders(ch), wantReaders)
			return 5
		}
		time.Sleep(time.Millisecond)
	}
	crc := uint32(0)
	ctx := context.Background()
	t0 = time.Now()
	for seq := uint64(0); seq < n; seq++ {
		buf, err := w.Reserve(ctx, msgLen(seq, slotSize), timeout)
		if err != nil {
			die(err, "cannot reserve")
		}
		msgFill(buf, seq)
		crc = crc32.Update(crc, crc32.IEEETable, buf)
		if err := w.Commit(len(buf)); err != nil {
			die(err, "cannot commit")
		}
		if interval > 0 {
			time.Sleep(time.Duration(interval) * time.Microsecond)
		}
	}
	fmt.Printf("done messages=%d crc=%08x seconds=%.6f\n", n, crc, time.Since(t0).Seconds())
	_ = w.Close()
	if f.set["hold"] {
		waitForExit()
	}
	if f.set["create"] {
		_ = ch.Unlink()
	}
	_ = ch.Close()
	return 0
}

func bcastReader(f flags) int {
	start := f.str("start", "oldest")
	if start != "oldest" && start != "latest" {
		usage()
	}
	delay := time.Duration(f.u64("delay-us", 0)) * time.Microsecond
	timeout := f.timeout(60)
	ch := openKind(f.name, shmchan.KindBroadcast)
	if want := policyOf(f); want >= 0 && int(ch.Geometry().Policy) != want {
		fmt.Printf("error incompatible: the channel's policy is %d, expected %d\n", ch.Geometry().Policy, want)
		return 3
	}
	slotSize := ch.Geometry().SlotSize
	r, err := ch.BroadcastReader(start == "oldest")
	if err != nil {
		die(err, "cannot attach a reader")
	}
	startPos := r.Position()
	fmt.Printf("ready position=%d\n", startPos)
	ctx := context.Background()
	crc := uint32(0)
	var delivered, stale, torn, accounted uint64
	var errs int64
	var first, last, prevTaken uint64
	haveLast, havePrev := false, false
	deliver := func(seq uint64, newCRC uint32) {
		if haveLast && seq <= last {
			countError(&errs, fmt.Sprintf("message %d after %d", seq, last))
		}
		if !haveLast {
			first = seq
		}
		haveLast, last = true, seq
		delivered++
		crc = newCRC
	}
	t0 := time.Now()
	for i := uint64(0); ; i++ {
		if delay > 0 && i%4 == 3 {
			before := r.Lost()
			b, _, err := r.RecvBytes(ctx, timeout)
			if errors.Is(err, shmchan.ErrEnded) {
				break
			}
			if err != nil {
				die(err, "cannot receive")
			}
			accounted += r.Lost() - before
			havePrev = false
			if seq, why := msgVerify(b, slotSize); why == "" {
				deliver(seq, crc32.Update(crc, crc32.IEEETable, b))
			} else {
				countError(&errs, "copied message: "+why)
			}
			time.Sleep(delay)
			continue
		}
		m, err := r.Recv(ctx, timeout)
		if errors.Is(err, shmchan.ErrEnded) {
			break
		}
		if err != nil {
			die(err, "cannot receive")
		}
		accounted += m.Lost
		if havePrev && m.Pos != prevTaken+1+m.Lost {
			countError(&errs, fmt.Sprintf("message %d (lost %d) after message %d", m.Pos, m.Lost, prevTaken))
		}
		havePrev, prevTaken = true, m.Pos
		time.Sleep(delay) // hold it: a lapping writer may rewrite it now
		seq, why := msgVerify(m.Data, slotSize)
		next := crc32.Update(crc, crc32.IEEETable, m.Data)
		intact := r.Check(m) == nil
		switch {
		case why != "" && !intact:
			torn++
		case why != "":
			countError(&errs, fmt.Sprintf("message %d claimed intact: %s", m.Pos, why))
		case intact && seq != m.Pos:
			countError(&errs, fmt.Sprintf("message at position %d holds %d", m.Pos, seq))
		}
		err = r.Release(m)
		switch {
		case errors.Is(err, shmchan.ErrLapped):
			stale++
			accounted++
		case err != nil:
			die(err, "cannot release")
		case !intact:
			countError(&errs, fmt.Sprintf("message %d: check said lapped, release said intact", m.Pos))
		default:
			deliver(m.Pos, next)
		}
	}
	end, lost := r.Position(), r.Lost()
	if accounted != lost {
		countError(&errs, fmt.Sprintf("the messages' lost counts add up to %d, the reader's to %d", accounted, lost))
	}
	if delivered+lost != end-startPos {
		countError(&errs, fmt.Sprintf("%d delivered + %d lost != positions %d..%d", delivered, lost, startPos, end))
	}
	opt := func(v uint64) string {
		if !haveLast {
			return "none"
		}
		return fmt.Sprint(v)
	}
	fmt.Printf("done messages=%d lost=%d stale=%d torn=%d errors=%d first=%s last=%s start=%d end=%d crc=%08x seconds=%.6f\n",
		delivered, lost, stale, torn, errs, opt(first), opt(last), startPos, end, crc, time.Since(t0).Seconds())
	_ = r.Close()
	_ = ch.Close()
	if errs > 0 {
		return 1
	}
	return 0
}

// ---- state boards: the 256-byte counter record (docs/interop.md) ----

const (
	recSize    = 256
	recArr     = 54
	recMul     = 2654435761
	numpyDescr = "([('seq', '<u8'), ('neg', '<i8'), ('half', '<f8'), ('lo', '<u4'), ('hi', '<u4'), " +
		"('last', '<u4'), ('mix', '<u4'), ('arr', '<u4', (54,))], ())"
)

func recMake(b []byte, seq uint64, last bool) {
	le := binary.LittleEndian
	le.PutUint64(b[0:], seq)
	le.PutUint64(b[8:], -seq)
	le.PutUint64(b[16:], math.Float64bits(float64(seq)*0.5))
	lo, hi := uint32(seq), uint32(seq>>32)
	l := uint32(0)
	if last {
		l = 1
	}
	le.PutUint32(b[24:], lo)
	le.PutUint32(b[28:], hi)
	le.PutUint32(b[32:], l)
	le.PutUint32(b[36:], lo^hi^0xA5A5A5A5)
	for i := 0; i < recArr; i++ {
		le.PutUint32(b[40+4*i:], uint32((seq+uint64(i))*recMul))
	}
}

func recDecode(b []byte) (uint64, bool, string) {
	if len(b) != recSize {
		return 0, false, fmt.Sprintf("a value of %d bytes", len(b))
	}
	seq := binary.LittleEndian.Uint64(b)
	l := binary.LittleEndian.Uint32(b[32:])
	if l > 1 {
		return seq, false, fmt.Sprintf("value %d: last is %d", seq, l)
	}
	var want [recSize]byte
	recMake(want[:], seq, l == 1)
	if !bytes.Equal(want[:], b) {
		return seq, false, fmt.Sprintf("value %d is torn or inconsistent", seq)
	}
	return seq, l == 1, ""
}

func stateWriter(f flags) int {
	writes, seconds, interval := f.u64("writes", 1000), f.num("seconds", 0), f.u64("interval-us", 0)
	var ch *shmchan.Channel
	if f.set["create"] {
		info := shmchan.ChannelInfo{Kind: shmchan.KindState, SlotSize: recSize, Capacity: 2, SlotAlign: 64,
			NumpyDescr: numpyDescr}
		var err error
		ch, err = createAny(f.name, shmchan.Config{Kind: shmchan.KindState, SlotSize: recSize, Capacity: 2, SlotAlign: 64,
			Descriptor: shmchan.BuildChannelInfo(info)})
		if err != nil {
			die(err, "cannot create channel")
		}
	} else {
		ch = openKind(f.name, shmchan.KindState)
	}
	w, err := ch.Writer()
	if err != nil {
		die(err, "cannot attach a writer")
	}
	ready("")
	if f.set["go"] {
		sc := bufio.NewScanner(os.Stdin)
		goSeen := false
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == "go" {
				goSeen = true
				break
			}
		}
		if !goSeen {
			fmt.Println(`error: stdin ended before "go"`)
			return 1
		}
	}
	ctx := context.Background()
	t0 := time.Now()
	for n := uint64(1); ; n++ {
		last := n >= writes && time.Since(t0).Seconds() >= seconds
		k := w.Head() + 1
		buf, err := w.Reserve(ctx, recSize, 0)
		if err != nil {
			die(err, "cannot reserve")
		}
		recMake(buf, k, last)
		if err := w.Commit(recSize); err != nil {
			die(err, "cannot commit")
		}
		if last {
			fmt.Printf("done writes=%d version=%d seconds=%.6f\n", n, w.Head(), time.Since(t0).Seconds())
			break
		}
		if interval > 0 {
			time.Sleep(time.Duration(interval) * time.Microsecond)
		}
	}
	_ = w.Close()
	if f.set["hold"] {
		waitForExit()
	}
	if f.set["create"] {
		_ = ch.Unlink()
	}
	_ = ch.Close()
	return 0
}

func stateReader(f flags) int {
	timeout := f.timeout(60)
	ch := openKind(f.name, shmchan.KindState)
	if ci, err := ch.Info(); err != nil || ci.NumpyDescr != numpyDescr {
		fmt.Printf("error incompatible: the board does not hold counter records (%v)\n", err)
		return 3
	}
	b, _ := ch.Board()
	ready("")
	ctx := context.Background()
	var reads, versions, nodata, first, lastV uint64
	var errs int64
	var buf []byte
	t0 := time.Now()
	for {
		if timeout >= 0 && time.Since(t0) > timeout {
			fmt.Println("error timeout: no final value")
			return 5
		}
		val, v, err := b.Read(buf)
		if errors.Is(err, shmchan.ErrNoData) {
			nodata++
			if f.set["wait"] {
				if _, err := b.WaitForChange(ctx, 0, timeout); err != nil {
					die(err, "cannot wait")
				}
			}
			continue
		}
		if errors.Is(err, shmchan.ErrBusy) {
			// the writer replaced the value faster than it could be copied (a loaded machine and a
			// writer in a tight loop): a live board's answer, not an error; look again
			runtime.Gosched()
			continue
		}
		if err != nil {
			die(err, "cannot read")
		}
		buf = val
		reads++
		seq, last, why := recDecode(val)
		if why != "" {
			countError(&errs, why)
		} else if seq != v {
			countError(&errs, fmt.Sprintf("version %d holds value %d", v, seq))
		}
		if v < lastV {
			countError(&errs, fmt.Sprintf("version %d after %d", v, lastV))
		}
		if v != lastV {
			versions++
			if first == 0 {
				first = v
			}
		}
		lastV = v
		if last {
			break
		}
		if f.set["wait"] {
			if _, err := b.WaitForChange(ctx, v, timeout); err != nil {
				die(err, "cannot wait")
			}
		}
	}
	fmt.Printf("done reads=%d versions=%d nodata=%d errors=%d first=%d last=%d seconds=%.6f\n", reads, versions, nodata,
		errs, first, lastV, time.Since(t0).Seconds())
	_ = ch.Close()
	if errs > 0 {
		return 1
	}
	return 0
}
