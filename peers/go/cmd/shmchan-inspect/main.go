// SPDX-License-Identifier: MIT
//go:build linux && amd64

// Command shmchan-inspect decodes message files (Frame, Packet or Audio, by file identifier) and
// prints one line per message with every field, the same lines as the C++ and Rust peers'
// shmchan-inspect:
//
//	shmchan-inspect FILE...
//
// A Frame is also read with release 1's generated code (frame_v1), as an old reader would: a line
// "v1 ..." with the fields that release knew. A message that does not decode prints "error ..."
// and the command exits 1 (2 when a file cannot be read).
package main

import (
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"os"
	"strconv"
	"strings"

	"github.com/shmchan/shmchan/peers/go/internal/frame_v1"
	"github.com/shmchan/shmchan/peers/go/shmchan"
)

func optTime(t int64) string {
	if t == shmchan.NoPTS {
		return "-"
	}
	return strconv.FormatInt(t, 10)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// v1Line reads a frame with release 1's generated code. Only after DecodeFrame accepted msg: the
// release-1 fields (0-7) and the planes vector, all that this code reads, were verified in place
// there, within the same bytes (the generated Go runtime has no verifier of its own).
func v1Line(msg []byte) string {
	old := frame_v1.GetRootAsFrame(msg, 0)
	planes := make([]string, old.PlanesLength())
	var p frame_v1.Plane
	for i := range planes {
		old.Planes(&p, i)
		planes[i] = fmt.Sprintf("%d:%d:%d", p.Offset(), p.Stride(), p.Rows())
	}
	return fmt.Sprintf("v1 seq=%d ts=%d size=%dx%d format=%d planes=%s data=%d+%d", old.Seq(), old.TimestampNs(),
		old.Width(), old.Height(), old.PixelFormat(), strings.Join(planes, ","), old.DataOffset(), old.DataSize())
}

func inspect(msg []byte) error {
	ident := ""
	if len(msg) >= 8 {
		ident = string(msg[4:8])
	}
	switch ident {
	case "SHFR":
		f, err := shmchan.DecodeFrame(msg)
		if err != nil {
			return err
		}
		fmt.Println(f.Line())
		fmt.Println(v1Line(msg))
	case "SHPK":
		p, err := shmchan.DecodePacket(msg)
		if err != nil {
			return err
		}
		fmt.Printf("packet seq=%d ts=%d codec=%s pts=%s dts=%s duration=%d time_base=%s key=%d extradata=%s "+
			"size=%dx%d bytes=%d crc=%08x\n", p.Seq, p.TimestampNs, p.Codec, optTime(p.Pts), optTime(p.Dts),
			p.Duration, p.TimeBase, b2i(p.Keyframe), orDash(hex.EncodeToString(p.Extradata)), p.Width, p.Height,
			len(p.Data), crc32.ChecksumIEEE(p.Data))
	case "SHAU":
		a, err := shmchan.DecodeAudio(msg)
		if err != nil {
			return err
		}
		crc := uint32(0)
		for i := 0; i < a.Planes(); i++ {
			crc = crc32.Update(crc, crc32.IEEETable, a.Plane(i))
		}
		fmt.Printf("audio seq=%d ts=%d rate=%d format=%d planar=%d channels=%d layout=%s samples=%d pts=%s "+
			"time_base=%s bytes_per_sample=%d crc=%08x\n", a.Seq, a.TimestampNs, a.SampleRate, a.Format,
			b2i(a.Planar), a.Channels, orDash(a.ChannelLayout), a.Samples, optTime(a.Pts), a.TimeBase,
			a.Format.Bytes(), crc)
	default:
		return fmt.Errorf("unknown file identifier %q", ident)
	}
	return nil
}

func main() {
	status := 0
	for _, path := range os.Args[1:] {
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "error %s: %v\n", path, err)
			os.Exit(2)
		}
		if err := inspect(data); err != nil {
			fmt.Printf("error %v\n", err)
			status = 1
		}
	}
	os.Exit(status)
}
