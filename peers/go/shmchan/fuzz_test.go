// SPDX-License-Identifier: MIT
//go:build linux && amd64

package shmchan

import (
	"encoding/binary"
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

// FuzzDecodeFrame: a Frame message from another process is refused or decoded inside its bytes.
func FuzzDecodeFrame(f *testing.F) {
	for _, fm := range []PixelFormat{GRAY8, RGB24, NV12, I420} {
		fw, _ := NewFrameWriter(17, 9, fm)
		msg := make([]byte, fw.MessageSize())
		fw.Write(msg, 3, 4)
		f.Add(msg)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		fr, err := DecodeFrame(msg)
		if err != nil {
			return
		}
		if fr.DataOffset+uint64(len(fr.Pixels)) > uint64(len(msg)) || len(fr.Planes) == 0 {
			t.Fatalf("decoded a frame that does not fit: %+v", fr)
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
