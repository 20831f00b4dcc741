// SPDX-License-Identifier: MIT
//go:build linux && amd64

package shmchan

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

var ctx = context.Background()

// uniqueName gives each test its own channel name and fails the test if it leaves the name behind.
func uniqueName(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("gotest.%d.%s", os.Getpid(), filepath.Base(t.Name()))
	t.Cleanup(func() {
		if _, err := os.Stat("/dev/shm/shmchan." + name); err == nil {
			_ = os.Remove("/dev/shm/shmchan." + name)
			t.Errorf("the test left /dev/shm/shmchan.%s behind", name)
		}
	})
	return name
}

func mustCreate(t *testing.T, name string, cfg Config) *Channel {
	t.Helper()
	c, err := Create(name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Unlink(); _ = c.Close() })
	return c
}

func mustOpen(t *testing.T, name string) *Channel {
	t.Helper()
	c, err := Open(name, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestGoldenHeaderValidatesAndDescriptorIsByteIdentical(t *testing.T) {
	golden, err := os.ReadFile("../../../schemas/golden/header.bin")
	if err != nil {
		t.Fatal(err)
	}
	g, err := ValidateHeader(golden, 1<<40)
	if err != nil {
		t.Fatal(err)
	}
	if g.SlotSize != 925696 || g.Capacity != 8 || g.SlotAlign != 4096 || g.DataOffset != uint64(len(golden)) {
		t.Fatalf("golden geometry %+v", g)
	}
	frame, _ := BuiltinSchema("frame")
	desc := BuildChannelInfo(ChannelInfo{Kind: KindSPSC, SlotSize: 925696, Capacity: 8, SlotAlign: 4096, Payload: &frame,
		DType: 3, Shape: []int64{480, 640, 3}, Metadata: map[string]string{"source": "golden", "units": "px"}})
	if got := golden[g.DescriptorOffset : g.DescriptorOffset+g.DescriptorSize]; !bytes.Equal(got, desc) {
		t.Fatalf("descriptor differs from the golden one (%d vs %d bytes)", len(desc), len(got))
	}
	// and a channel made with that geometry and descriptor has the golden header, but for pid and time
	name := uniqueName(t)
	c := mustCreate(t, name, Config{SlotSize: 925696, Capacity: 8, SlotAlign: 4096, Descriptor: desc})
	img := append([]byte(nil), c.mem[:g.DataOffset]...)
	clear(img[offCreatorPid : offCreatorPid+4])
	clear(img[offCreatedNs : offCreatedNs+8])
	if !bytes.Equal(img, golden) {
		t.Fatal("the Go peer's header differs from schemas/golden/header.bin")
	}
}

func TestDataOffsetUsesTheLayoutPageNotTheMachines(t *testing.T) {
	g, err := geometry(KindSPSC, 8, 100, 0, 0, 0, 0)
	if err != nil || g.SlotAlign != 64 || g.DataOffset != 4096 || g.SlotStride != 128 {
		t.Fatalf("%+v %v", g, err)
	}
	g, err = geometry(KindBroadcast, 4, 5000, 0, 4, 1, 100)
	if err != nil || g.SlotAlign != 4096 || g.ReadersOffset != 1152 || g.DescriptorOffset != 1664 || g.DataOffset != 4096 {
		t.Fatalf("%+v %v", g, err)
	}
}

func TestSPSCStreamsAcrossHandlesAndEndsAtWriterClose(t *testing.T) {
	name := uniqueName(t)
	c := mustCreate(t, name, Config{SlotSize: 256, Capacity: 4})
	w, err := c.Writer()
	if err != nil {
		t.Fatal(err)
	}
	o := mustOpen(t, name)
	r, err := o.Reader()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mustOpen(t, name).Writer(); !errors.Is(err, ErrBusy) {
		t.Fatalf("second writer: %v", err)
	}
	const n = 20000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < n; i++ {
			msg := binary.LittleEndian.AppendUint64(nil, uint64(i))
			msg = append(msg, bytes.Repeat([]byte{byte(i)}, i%200)...)
			if err := w.Send(ctx, msg, 5*time.Second); err != nil {
				t.Error(err)
				return
			}
		}
		_ = w.Close()
	}()
	for i := 0; ; i++ {
		m, err := r.Recv(ctx, 5*time.Second)
		if errors.Is(err, ErrEnded) {
			if i != n {
				t.Fatalf("ended after %d of %d", i, n)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if got := binary.LittleEndian.Uint64(m.Data); got != uint64(i) || len(m.Data) != 8+i%200 {
			t.Fatalf("message %d: %d, %d bytes", i, got, len(m.Data))
		}
		if err := r.Release(m); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	st, _ := c.Stats()
	if st.MessagesWritten != n || st.MessagesRead != n || st.Head != n || st.Tail != n || st.WriterState != peerClosed {
		t.Fatalf("stats %+v", st)
	}
}

func TestZeroTimeoutsAndPinnedRing(t *testing.T) {
	name := uniqueName(t)
	c := mustCreate(t, name, Config{SlotSize: 64, Capacity: 2})
	w, _ := c.Writer()
	r, _ := mustOpen(t, name).Reader()
	if _, err := r.Recv(ctx, 0); !errors.Is(err, ErrEmpty) {
		t.Fatalf("empty: %v", err)
	}
	for i := 0; i < 2; i++ {
		if err := w.Send(ctx, []byte("x"), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Send(ctx, []byte("x"), 0); !errors.Is(err, ErrFull) {
		t.Fatalf("full: %v", err)
	}
	start := time.Now()
	if err := w.Send(ctx, []byte("x"), 50*time.Millisecond); !errors.Is(err, ErrTimeout) || time.Since(start) > time.Second {
		t.Fatalf("timeout: %v after %v", err, time.Since(start))
	}
	m1, _ := r.Recv(ctx, 0)
	m2, _ := r.Recv(ctx, 0)
	if _, err := r.Recv(ctx, time.Second); !errors.Is(err, ErrPinned) {
		t.Fatalf("pinned: %v", err)
	}
	_ = r.Release(m2) // out of order: tail stays until m1 goes back
	if st, _ := c.Stats(); st.Tail != 0 {
		t.Fatalf("tail moved past a held message: %d", st.Tail)
	}
	_ = r.Release(m1)
	if st, _ := c.Stats(); st.Tail != 2 || st.FullWaits != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestContextCancelEndsABlockedReceive(t *testing.T) {
	name := uniqueName(t)
	c := mustCreate(t, name, Config{SlotSize: 64, Capacity: 2})
	r, _ := c.Reader()
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(30*time.Millisecond, cancel)
	start := time.Now()
	_, err := r.Recv(cctx, Forever)
	if !errors.Is(err, context.Canceled) || time.Since(start) > 500*time.Millisecond {
		t.Fatalf("%v after %v", err, time.Since(start))
	}
}

// TestMain doubles as a child process for the tests that kill a peer or rewrite its messages.
func TestMain(m *testing.M) {
	if name := os.Getenv("SHMCHAN_GO_CHILD_HOSTILE"); name != "" {
		hostileChild(name)
	}
	if name := os.Getenv("SHMCHAN_GO_CHILD_WRITER"); name != "" {
		c, err := Open(name, OpenOptions{})
		if err != nil {
			os.Exit(3)
		}
		w, err := c.Writer()
		if err != nil {
			os.Exit(3)
		}
		for i := 0; i < 3; i++ {
			_ = w.Send(ctx, []byte{byte(i)}, time.Second)
		}
		fmt.Println("ready")
		time.Sleep(time.Hour)
	}
	os.Exit(m.Run())
}

func TestReaderGetsEveryCommittedMessageThenPeerDeadWhenWriterIsKilled(t *testing.T) {
	name := uniqueName(t)
	c := mustCreate(t, name, Config{SlotSize: 64, Capacity: 8})
	r, _ := c.Reader()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SHMCHAN_GO_CHILD_WRITER="+name)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("child: %q %v", buf, err)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	for i := 0; i < 3; i++ {
		b, _, err := r.RecvBytes(ctx, 2*time.Second)
		if err != nil || b[0] != byte(i) {
			t.Fatalf("message %d: %v %v", i, b, err)
		}
	}
	start := time.Now()
	if _, err := r.Recv(ctx, 5*time.Second); !errors.Is(err, ErrPeerDead) || time.Since(start) > time.Second {
		t.Fatalf("%v after %v", err, time.Since(start))
	}
	// a new writer takes over from head
	w, err := c.Writer()
	if err != nil {
		t.Fatal(err)
	}
	_ = w.Send(ctx, []byte{9}, 0)
	if b, _, err := r.RecvBytes(ctx, time.Second); err != nil || b[0] != 9 {
		t.Fatalf("after take-over: %v %v", b, err)
	}
}

func bcastMsg(seq uint64) []byte {
	b := make([]byte, 8*(2+seq%7))
	for j := range len(b) / 8 {
		binary.LittleEndian.PutUint64(b[8*j:], seq*1000+uint64(j))
	}
	return b
}

func TestBroadcastBlockDeliversEveryMessageToEveryReader(t *testing.T) {
	name := uniqueName(t)
	c := mustCreate(t, name, Config{Kind: KindBroadcast, SlotSize: 128, Capacity: 4, MaxReaders: 3})
	const n = 3000
	var readers []*Reader
	for range 3 {
		r, err := mustOpen(t, name).BroadcastReader(true)
		if err != nil {
			t.Fatal(err)
		}
		readers = append(readers, r)
	}
	if _, err := mustOpen(t, name).BroadcastReader(true); !errors.Is(err, ErrBusy) {
		t.Fatalf("fourth reader: %v", err)
	}
	var wg sync.WaitGroup
	for _, r := range readers {
		wg.Add(1)
		go func(r *Reader) {
			defer wg.Done()
			for i := uint64(0); ; i++ {
				b, lost, err := r.RecvBytes(ctx, 5*time.Second)
				if errors.Is(err, ErrEnded) {
					if i != n {
						t.Errorf("ended after %d", i)
					}
					return
				}
				if err != nil || lost != 0 || !bytes.Equal(b, bcastMsg(i)) {
					t.Errorf("message %d: %v lost %d", i, err, lost)
					return
				}
			}
		}(r)
	}
	w, _ := c.Writer()
	for i := uint64(0); i < n; i++ {
		if err := w.Send(ctx, bcastMsg(i), 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	_ = w.Close()
	wg.Wait()
}

func TestBroadcastOverwriteNeverHandsOutATornMessage(t *testing.T) {
	name := uniqueName(t)
	c := mustCreate(t, name, Config{Kind: KindBroadcast, SlotSize: 128, Capacity: 2, MaxReaders: 1, Policy: PolicyOverwrite})
	r, _ := mustOpen(t, name).BroadcastReader(true)
	w, _ := c.Writer()
	const n = 20000
	done := make(chan struct{})
	go func() {
		defer close(done)
		var got, prev uint64
		for {
			b, _, err := r.RecvBytes(ctx, 5*time.Second)
			if errors.Is(err, ErrEnded) {
				break
			}
			if err != nil {
				t.Error(err)
				return
			}
			seq := binary.LittleEndian.Uint64(b) / 1000
			if !bytes.Equal(b, bcastMsg(seq)) || (got > 0 && seq <= prev) {
				t.Errorf("torn or out of order: %d after %d", seq, prev)
				return
			}
			got, prev = got+1, seq
		}
		if got+r.Lost() != n {
			t.Errorf("delivered %d + lost %d != %d", got, r.Lost(), n)
		}
	}()
	for i := uint64(0); i < n; i++ {
		if err := w.Send(ctx, bcastMsg(i), 0); err != nil {
			t.Fatal(err)
		}
	}
	_ = w.Close()
	<-done
}

func TestStateBoardIsNeverTornAndWaitsForChanges(t *testing.T) {
	name := uniqueName(t)
	c := mustCreate(t, name, Config{Kind: KindState, SlotSize: 512, Capacity: 2, SlotAlign: 64})
	b, _ := mustOpen(t, name).Board()
	if _, _, err := b.Read(nil); !errors.Is(err, ErrNoData) {
		t.Fatal(err)
	}
	w, _ := c.Writer()
	stop := make(chan struct{})
	go func() {
		defer close(stop)
		val := make([]byte, 512)
		for v := uint64(1); v <= 20000; v++ {
			for i := range 64 {
				binary.LittleEndian.PutUint64(val[8*i:], v)
			}
			if err := w.Send(ctx, val, 0); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var last uint64
	for last < 20000 {
		val, v, err := b.Read(nil)
		if errors.Is(err, ErrNoData) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for i := range 64 {
			if binary.LittleEndian.Uint64(val[8*i:]) != v {
				t.Fatalf("version %d torn", v)
			}
		}
		if v < last {
			t.Fatalf("version %d after %d", v, last)
		}
		last = v
	}
	<-stop
	sent := make(chan struct{})
	go func() { defer close(sent); time.Sleep(20 * time.Millisecond); _ = w.Send(ctx, make([]byte, 8), 0) }()
	if v, err := b.WaitForChange(ctx, last, 2*time.Second); err != nil || v != last+1 {
		t.Fatalf("wait: %d %v", v, err)
	}
	<-sent
	_ = w.Close()
	if _, err := b.WaitForChange(ctx, last+1, 150*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("a board keeps waiting after its writer closed: %v", err)
	}
}

func TestFileBackedChannelWithSyncMsyncPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chan")
	c, err := CreateFile(path, Config{SlotSize: 64, Capacity: 4, Msync: MsyncSync})
	if err != nil {
		t.Fatal(err)
	}
	w, _ := c.Writer()
	_ = w.Send(ctx, []byte("persisted"), 0)
	_ = c.Close()
	o, err := OpenFile(path, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	r, _ := o.Reader()
	if b, _, err := r.RecvBytes(ctx, 0); err != nil || string(b) != "persisted" {
		t.Fatalf("%q %v", b, err)
	}
}

func TestOpenRefusesForeignModesAndMissingChannels(t *testing.T) {
	name := uniqueName(t)
	c := mustCreate(t, name, Config{SlotSize: 64, Capacity: 2, Mode: 0o666})
	_ = c
	if _, err := Open(name, OpenOptions{}); !errors.Is(err, ErrPermission) {
		t.Fatalf("group-writable: %v", err)
	}
	o, err := Open(name, OpenOptions{AllowForeign: true})
	if err != nil {
		t.Fatal(err)
	}
	_ = o.Close()
	if _, err := Open(name+"x", OpenOptions{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	if _, err := Open("../x", OpenOptions{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad name: %v", err)
	}
}

func TestOpenFailsFastOnAnOrphanedUninitialisedObject(t *testing.T) {
	name := uniqueName(t)
	p := "/dev/shm/shmchan." + name
	if err := os.WriteFile(p, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(p)
	time.Sleep(120 * time.Millisecond) // older than the creator's grace period (R7)
	start := time.Now()
	if _, err := Open(name, OpenOptions{Timeout: 5 * time.Second}); !errors.Is(err, ErrNotInitialised) || time.Since(start) > time.Second {
		t.Fatalf("%v after %v", err, time.Since(start))
	}
}

func TestDecodeFrameAndTensorRoundTripAndRefuseGarbage(t *testing.T) {
	fw, err := NewFrameWriter(33, 17, I420)
	if err != nil {
		t.Fatal(err)
	}
	msg := make([]byte, fw.MessageSize())
	px := fw.Write(msg, 7, 99)
	for i := range px {
		px[i] = byte(i)
	}
	f, err := DecodeFrame(msg)
	if err != nil || f.Seq != 7 || f.Width != 33 || len(f.Planes) != 3 || f.DataOffset%64 != 0 || !bytes.Equal(f.Pixels, px) {
		t.Fatalf("%+v %v", f, err)
	}
	for cut := 0; cut < len(msg); cut += 7 {
		_, _ = DecodeFrame(msg[:cut]) // must not panic
	}
	bad := append([]byte(nil), msg...)
	bad[0] = 0xff
	if _, err := DecodeFrame(bad); !errors.Is(err, ErrDecode) {
		t.Fatalf("garbage root: %v", err)
	}
	tb := make([]byte, 4096)
	data, n, err := EncodeTensor(tb, 11, []uint64{3, 4}, 5, 6)
	if err != nil || len(data) != 48 {
		t.Fatal(err)
	}
	tn, err := DecodeTensor(tb[:n])
	if err != nil || tn.Seq != 5 || tn.Strides[0] != 16 || len(tn.Data) != 48 {
		t.Fatalf("%+v %v", tn, err)
	}
}

func TestSchemaCompatibilityFollowsTheEvolutionRules(t *testing.T) {
	frame, _ := BuiltinSchema("frame")
	next, _ := BuiltinSchema("frame_next")
	bad, _ := BuiltinSchema("frame_incompatible")
	tensor, _ := BuiltinSchema("tensor")
	if why := Compatible(next, frame); why != "" {
		t.Fatal(why)
	}
	if why := Compatible(frame, next); why != "" {
		t.Fatal(why)
	}
	if why := Compatible(bad, frame); why == "" {
		t.Fatal("an incompatible schema was accepted")
	}
	if why := Compatible(tensor, frame); why == "" {
		t.Fatal("another root was accepted")
	}
}
