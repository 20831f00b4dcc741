// SPDX-License-Identifier: MIT
//go:build linux && amd64

package shmchan

import (
	"encoding/binary"
	"errors"
	"os"
	"testing"
)

// FuzzValidateHeader: any header bytes and object size are refused with an error or accepted with
// a geometry that fits the object; nothing panics. Seeds: testdata/fuzz/FuzzValidateHeader.
func FuzzValidateHeader(f *testing.F) {
	if golden, err := os.ReadFile("../../../schemas/golden/header.bin"); err == nil {
		f.Add(golden[:HeaderSize], uint64(len(golden))+8*925696)
	}
	f.Fuzz(func(t *testing.T, hdr []byte, size uint64) {
		g, err := ValidateHeader(hdr, size)
		if err != nil {
			return
		}
		capacity := uint64(g.Capacity)
		if g.TotalSize > size || g.TotalSize > MaxTotalSize || g.DataOffset%LayoutPage != 0 ||
			g.DataOffset%uint64(g.SlotAlign) != 0 || g.SlotStride < g.SlotSize ||
			g.DataOffset+capacity*g.SlotStride != g.TotalSize || g.LensOffset != HeaderSize ||
			binary.LittleEndian.Uint64(hdr) != Magic {
			t.Fatalf("accepted an inconsistent geometry %+v for size %d", g, size)
		}
		tables := HeaderSize + capacity*8
		if g.Kind != KindSPSC {
			tables = HeaderSize + capacity*16
		}
		if g.ReadersOffset != 0 {
			tables = g.ReadersOffset + PlaceSize*uint64(g.MaxReaders)
		}
		if g.DescriptorOffset != 0 {
			if g.DescriptorOffset < tables {
				t.Fatalf("descriptor overlaps the tables: %+v", g)
			}
			tables = g.DescriptorOffset + g.DescriptorSize
		}
		if tables > g.DataOffset {
			t.Fatalf("tables overlap the slots: %+v", g)
		}
	})
}

// FuzzDecodeFrame: a Frame message from another process is refused or decoded inside its bytes,
// every image row of every plane inside the pixels. Seeds: every format (packed and with padded
// rows, release-2 fields), the golden frame.
func FuzzDecodeFrame(f *testing.F) {
	for fm := range formats {
		fw, _ := NewFrameWriter(18, 9, fm)
		msg := make([]byte, fw.MessageSize())
		fw.Write(msg, 3, 4)
		f.Add(msg)
		s := packedSpec(fm, 18, 9, 64)
		s.media = true
		f.Add(buildFrame(s))
	}
	f.Add(golden(f, "frame_v2"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		fr, err := DecodeFrame(msg)
		if err != nil {
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("not a decode error: %v", err)
			}
			return
		}
		if fr.DataOffset+uint64(len(fr.Pixels)) > uint64(len(msg)) || len(fr.Planes) == 0 {
			t.Fatalf("decoded a frame that does not fit: %+v", fr)
		}
		for p := range fr.Planes {
			for r := 0; r < fr.ImageRows(p); r++ {
				if len(fr.Row(p, r)) == 0 {
					t.Fatalf("plane %d row %d", p, r)
				}
			}
		}
		_ = fr.Line()
	})
}

// FuzzDecodePacket: a Packet message is refused or decoded with its data inside the message.
func FuzzDecodePacket(f *testing.F) {
	f.Add(golden(f, "packet"))
	f.Add(packetMsg([]byte("hevc"), []byte{1, 2, 3}, 128, 16, 160))
	f.Fuzz(func(t *testing.T, msg []byte) {
		p, err := DecodePacket(msg)
		if err != nil {
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("not a decode error: %v", err)
			}
			return
		}
		if p.DataOffset+uint64(len(p.Data)) > uint64(len(msg)) || len(p.Extradata) > MaxExtradata {
			t.Fatalf("decoded a packet that does not fit: %+v", p)
		}
	})
}

// FuzzDecodeAudio: an Audio message is refused or decoded with every plane inside its data.
func FuzzDecodeAudio(f *testing.F) {
	f.Add(golden(f, "audio"))
	f.Add(audioMsg(audioSpec{format: uint8(SampleS16), channels: 2, samples: 4, dataOffset: 128, dataSize: 16, total: 144}))
	f.Add(audioMsg(audioSpec{format: uint8(SampleF64), planar: true, channels: 3, samples: 2, stride: 64,
		dataOffset: 128, dataSize: 144, total: 272}))
	f.Fuzz(func(t *testing.T, msg []byte) {
		a, err := DecodeAudio(msg)
		if err != nil {
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("not a decode error: %v", err)
			}
			return
		}
		if a.DataOffset+uint64(len(a.Data)) > uint64(len(msg)) || a.Planes() == 0 {
			t.Fatalf("decoded audio that does not fit: %+v", a)
		}
		for i := 0; i < a.Planes(); i++ {
			if uint64(len(a.Plane(i))) != uint64(a.Samples)*a.Format.Bytes()*uint64(a.Channels)/uint64(a.Planes()) {
				t.Fatalf("plane %d of %+v", i, a)
			}
		}
	})
}

// FuzzDecodeChannelInfo: a descriptor is refused or decoded, never a panic.
func FuzzDecodeChannelInfo(f *testing.F) {
	frame, _ := BuiltinSchema("frame")
	f.Add(BuildChannelInfo(ChannelInfo{SlotSize: 100, Capacity: 8, SlotAlign: 64, Payload: &frame, Shape: []int64{1, 2},
		Metadata: map[string]string{"a": "b"}, NumpyDescr: "x"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = DecodeChannelInfo(data)
	})
}
