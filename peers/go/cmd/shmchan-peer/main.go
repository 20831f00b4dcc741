// SPDX-License-Identifier: MIT
//go:build linux && amd64

// Command shmchan-peer is the Go peer of the conformance contract (docs/conformance.md):
//
//	shmchan-peer produce NAME [--create] [--frames N] [--width W] [--height H] [--format F] [--capacity C]
//	    [--schema frame|frame_next|frame_incompatible|none] [--slot-size B] [--verify crc|stamp|none]
//	    [--msync none|async|sync|explicit] [--hold] [--timeout S]
//	shmchan-peer consume NAME [the same options; --verify crc|stamp|frames|none]
//	shmchan-peer bcast writer NAME [--create] [--slot-size B] [--capacity C] [--max-readers R]
//	    [--policy block|overwrite] [--messages N] [--wait-readers K] [--interval-us U] [--timeout S] [--hold]
//	shmchan-peer bcast reader NAME [--start oldest|latest] [--policy block|overwrite] [--delay-us U] [--timeout S]
//	shmchan-peer state writer NAME [--create] [--writes N] [--seconds S] [--interval-us U] [--go] [--hold]
//	shmchan-peer state reader NAME [--wait] [--timeout S]
//	shmchan-peer open NAME [--timeout S]
//
// F is a pixel format of docs/protocol.md (RGB24, I420, P010, ...) or FFmpeg's name of it (yuv420p,
// ...). consume --verify frames prints a line per frame with its media fields and the crc32 of its
// image rows (the same line as the C++ and Rust consumers).
// NAME with a '/' is a file-backed channel; unix:SOCKET is a sealed channel served on that socket. It prints "ready" when attached and a "done ..." line
// at the end; errors print "error TAG: ..." and exit with the contract's codes.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/shmchan/shmchan/peers/go/shmchan"
)

type flags struct {
	name string
	vals map[string]string
	set  map[string]bool
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: shmchan-peer produce|consume|open NAME [options], shmchan-peer bcast|state writer|reader NAME [options]")
	os.Exit(2)
}

func parse(args []string, bools ...string) flags {
	if len(args) < 1 || strings.HasPrefix(args[0], "--") {
		usage()
	}
	f := flags{name: args[0], vals: map[string]string{}, set: map[string]bool{}}
	isBool := map[string]bool{}
	for _, b := range bools {
		isBool[b] = true
	}
	for i := 1; i < len(args); i++ {
		k, ok := strings.CutPrefix(args[i], "--")
		if !ok {
			usage()
		}
		if isBool[k] {
			f.set[k] = true
			continue
		}
		if i+1 >= len(args) {
			usage()
		}
		f.vals[k] = args[i+1]
		i++
	}
	return f
}

func (f flags) str(k, def string) string {
	if v, ok := f.vals[k]; ok {
		return v
	}
	return def
}

func (f flags) num(k string, def float64) float64 {
	v, ok := f.vals[k]
	if !ok {
		return def
	}
	x, err := strconv.ParseFloat(v, 64)
	if err != nil {
		usage()
	}
	return x
}

func (f flags) u64(k string, def uint64) uint64 { return uint64(f.num(k, float64(def))) }

// timeout: --timeout S (default def seconds; negative: forever).
func (f flags) timeout(def float64) time.Duration {
	s := f.num("timeout", def)
	if s < 0 {
		return shmchan.Forever
	}
	return time.Duration(s * float64(time.Second))
}

// die prints "error TAG: ..." and exits with the contract's code for err.
func die(err error, what string) {
	tag, code := "error", 1
	switch {
	case errors.Is(err, shmchan.ErrPeerDead):
		tag, code = "peer-dead", 4
	case errors.Is(err, shmchan.ErrTimeout), errors.Is(err, shmchan.ErrFull), errors.Is(err, shmchan.ErrEmpty):
		tag, code = "timeout", 5
	case errors.Is(err, shmchan.ErrIncompatible), errors.Is(err, shmchan.ErrNotInitialised):
		tag, code = "incompatible", 3
	case errors.Is(err, shmchan.ErrCorrupt):
		tag, code = "corrupt", 6
	case errors.Is(err, shmchan.ErrPermission):
		tag, code = "permission", 7
	case errors.Is(err, shmchan.ErrBusy):
		tag, code = "busy", 8
	case errors.Is(err, shmchan.ErrNotFound):
		tag, code = "not-found", 9
	}
	fmt.Printf("error %s: %s: %v\n", tag, what, err)
	fmt.Fprintf(os.Stderr, "%s: %s: %v\n", tag, what, err)
	os.Exit(code)
}

func ready(extra string) {
	fmt.Println("ready" + extra)
}

func waitForExit() {
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "exit" {
			return
		}
	}
}

// openAny: NAME, a file path (with a '/'), or unix:SOCKET for a sealed channel served there.
func openAny(name string, timeout time.Duration) (*shmchan.Channel, error) {
	opt := shmchan.OpenOptions{Timeout: timeout}
	if sock, ok := strings.CutPrefix(name, "unix:"); ok {
		return shmchan.Connect(sock, opt)
	}
	if strings.Contains(name, "/") {
		return shmchan.OpenFile(name, opt)
	}
	return shmchan.Open(name, opt)
}

func createAny(name string, cfg shmchan.Config) (*shmchan.Channel, error) {
	if strings.Contains(name, "/") {
		return shmchan.CreateFile(name, cfg)
	}
	return shmchan.Create(name, cfg)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "produce":
		frames(parse(args, "create", "hold"), true)
	case "consume":
		frames(parse(args, "create", "hold"), false)
	case "open":
		openCmd(parse(args))
	case "bcast", "state":
		if len(args) < 1 {
			usage()
		}
		f := parse(args[1:], "create", "hold", "go", "wait")
		switch os.Args[1] + " " + args[0] {
		case "bcast writer":
			os.Exit(bcastWriter(f))
		case "bcast reader":
			os.Exit(bcastReader(f))
		case "state writer":
			os.Exit(stateWriter(f))
		case "state reader":
			os.Exit(stateReader(f))
		}
		usage()
	default:
		usage()
	}
}

// openCmd opens and validates a channel and says what it found (the kit's header verdicts).
func openCmd(f flags) {
	ch, err := openAny(f.name, f.timeout(0.5))
	if err != nil {
		die(err, "cannot open channel")
	}
	g := ch.Geometry()
	fmt.Printf("ok kind=%s slot_size=%d capacity=%d\n", g.Kind, g.SlotSize, g.Capacity)
	_ = ch.Close()
}

// ---- frames (produce / consume) ----

func patternBase(n uint64) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>10)
	}
	return b
}

func frames(f flags, producer bool) {
	w, h := uint32(f.u64("width", 1920)), uint32(f.u64("height", 1080))
	format, ok := shmchan.ParsePixelFormat(f.str("format", "RGB24"))
	if !ok {
		usage()
	}
	fw, err := shmchan.NewFrameWriter(w, h, format)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bad frame geometry: %v\n", err)
		os.Exit(2)
	}
	schemaName := f.str("schema", "frame")
	var want *shmchan.PayloadSchema
	if schemaName != "none" {
		s, ok := shmchan.BuiltinSchema(schemaName)
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown schema %s\n", schemaName)
			os.Exit(2)
		}
		want = &s
	}
	verify := f.str("verify", "crc")
	timeout := f.timeout(-1)
	var ch *shmchan.Channel
	if f.set["create"] {
		slot := f.u64("slot-size", fw.MessageSize())
		capacity := uint32(f.u64("capacity", 8))
		info := shmchan.ChannelInfo{Kind: shmchan.KindSPSC, SlotSize: slot, Capacity: capacity, SlotAlign: 4096, Payload: want,
			Metadata: map[string]string{"peer": "go"}}
		msync := map[string]shmchan.Msync{"none": 0, "async": 1, "sync": 2, "explicit": 3}[f.str("msync", "none")]
		ch, err = createAny(f.name, shmchan.Config{SlotSize: slot, Capacity: capacity, SlotAlign: 4096, Msync: msync,
			Descriptor: shmchan.BuildChannelInfo(info)})
		if err != nil {
			die(err, "cannot create channel")
		}
	} else {
		ch, err = openAny(f.name, 5*time.Second)
		if err != nil {
			die(err, "cannot open channel")
		}
		if want != nil {
			if err := ch.CheckSchema(*want); err != nil {
				fmt.Printf("error incompatible: %v\n", err)
				os.Exit(3)
			}
		}
	}
	ctx := context.Background()
	crc := uint32(0)
	var n, errs int64
	var start, last time.Time
	if producer {
		ready("")
		wr, err := ch.Writer()
		if err != nil {
			die(err, "cannot attach a writer")
		}
		count := int64(f.num("frames", 100))
		base := patternBase(fw.DataSize)
		start = time.Now()
		for seq := int64(0); seq < count; seq++ {
			msg, err := wr.Reserve(ctx, int(fw.MessageSize()), timeout)
			if err != nil {
				die(err, "cannot reserve")
			}
			px := fw.Write(msg, uint64(seq), uint64(time.Now().UnixNano()))
			k := byte(seq * 13)
			for i := range px {
				px[i] = base[i] + k
			}
			if verify == "crc" {
				crc = crc32.Update(crc, crc32.IEEETable, px)
			}
			if err := wr.Commit(int(fw.MessageSize())); err != nil {
				die(err, "cannot commit")
			}
			n++
		}
		last = time.Now()
		_ = wr.Close()
	} else {
		rd, err := ch.Reader()
		if err != nil {
			die(err, "cannot attach a reader")
		}
		ready("")
		count := int64(f.num("frames", -1))
		var base []byte
		for count < 0 || n < count {
			m, err := rd.Recv(ctx, timeout)
			if errors.Is(err, shmchan.ErrEnded) {
				break
			}
			if err != nil {
				die(err, "cannot receive")
			}
			if n == 0 {
				start = time.Now()
			}
			fr, err := shmchan.DecodeFrame(m.Data)
			if err != nil {
				fmt.Printf("error decode: %v\n", err)
				os.Exit(1)
			}
			if fr.Seq != uint64(n) {
				errs++
				fmt.Fprintf(os.Stderr, "frame %d: seq %d\n", n, fr.Seq)
			}
			switch verify {
			case "crc":
				crc = crc32.Update(crc, crc32.IEEETable, fr.Pixels)
			case "frames":
				crc = crc32.Update(crc, crc32.IEEETable, fr.Pixels)
				fmt.Println(fr.Line())
			case "stamp":
				if uint64(len(base)) != uint64(len(fr.Pixels)) {
					base = patternBase(uint64(len(fr.Pixels)))
				}
				k := byte(fr.Seq * 13)
				for i := 0; i < len(fr.Pixels); i += 4096 {
					if fr.Pixels[i] != base[i]+k {
						errs++
						break
					}
				}
			}
			if err := rd.Release(m); err != nil {
				die(err, "cannot release")
			}
			n++
			last = time.Now()
		}
		_ = rd.Close()
	}
	secs := last.Sub(start).Seconds()
	if n == 0 {
		secs = 0
	}
	fps := 0.0
	if secs > 0 {
		fps = float64(n) / secs
	}
	if producer {
		fmt.Printf("done frames=%d crc=%08x seconds=%.6f fps=%.1f\n", n, crc, secs, fps)
	} else {
		fmt.Printf("done frames=%d crc=%08x seconds=%.6f fps=%.1f errors=%d\n", n, crc, secs, fps, errs)
	}
	if f.set["hold"] {
		waitForExit()
	}
	if f.set["create"] {
		_ = ch.Unlink()
	}
	_ = ch.Close()
	if errs > 0 {
		os.Exit(1)
	}
}
