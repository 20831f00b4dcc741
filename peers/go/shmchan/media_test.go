// SPDX-License-Identifier: MIT
//go:build linux && amd64

package shmchan

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	flatbuffers "github.com/google/flatbuffers/go"

	"github.com/shmchan/shmchan/peers/go/internal/fb"
	"github.com/shmchan/shmchan/peers/go/internal/frame_v1"
)

func golden(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../../../schemas/golden/" + name + ".bin")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// frameSpec describes a Frame message for buildFrame; the zero values of the release-2 fields
// leave them out (a release-1 frame).
type frameSpec struct {
	w, h        uint32
	format      uint8
	planes      []Plane // offsets from dataOffset
	dataOffset  uint64
	dataSize    uint64
	planesCount int // -1: as planes; otherwise a vector of this many (repeating the last)
	media       bool
}

// buildFrame writes a Frame message of spec with the generated builder, the pixels zero.
func buildFrame(s frameSpec) []byte {
	b := flatbuffers.NewBuilder(512)
	n := len(s.planes)
	if s.planesCount >= 0 {
		n = s.planesCount
	}
	fb.FrameStartPlanesVector(b, n)
	for i := n - 1; i >= 0; i-- {
		p := s.planes[min(i, len(s.planes)-1)]
		fb.CreatePlane(b, p.Offset+s.dataOffset, p.Stride, p.Rows)
	}
	pv := b.EndVector(n)
	fb.FrameStart(b)
	fb.FrameAddSeq(b, 5)
	fb.FrameAddTimestampNs(b, 6)
	fb.FrameAddDataOffset(b, s.dataOffset)
	fb.FrameAddDataSize(b, s.dataSize)
	fb.FrameAddPlanes(b, pv)
	fb.FrameAddWidth(b, s.w)
	fb.FrameAddHeight(b, s.h)
	fb.FrameAddPixelFormat(b, fb.PixelFormat(s.format))
	if s.media {
		fb.FrameAddPts(b, -7)
		fb.FrameAddTimeBase(b, fb.CreateRational(b, 1, 90000))
		fb.FrameAddDuration(b, 3003)
		fb.FrameAddKeyframe(b, true)
		fb.FrameAddColorMatrix(b, 200) // a value no release names yet: accepted
		fb.FrameAddColorRange(b, fb.ColorRangeFull)
		fb.FrameAddColorPrimaries(b, fb.ColorPrimariesBT2020)
		fb.FrameAddColorTransfer(b, fb.ColorTransferSMPTE2084)
		fb.FrameAddSampleAspectRatio(b, fb.CreateRational(b, 16, -1)) // den <= 0: unknown
		fb.FrameAddRotation(b, 180)
		fb.FrameAddFieldOrder(b, fb.FieldOrderBottomFirst)
	}
	b.FinishWithFileIdentifier(fb.FrameEnd(b), []byte(fb.FrameIdentifier))
	h := b.FinishedBytes()
	if uint64(len(h)) > s.dataOffset {
		panic(fmt.Sprintf("header of %d bytes over data_offset %d", len(h), s.dataOffset))
	}
	msg := make([]byte, s.dataOffset+s.dataSize)
	copy(msg, h)
	return msg
}

// packedSpec: a well-formed frame of format f, rows padded to a multiple of align.
func packedSpec(f PixelFormat, w, h uint32, align uint32) frameSpec {
	planes, err := planeLayout(f, w, h)
	if err != nil {
		panic(err)
	}
	off := uint64(0)
	for i := range planes {
		planes[i].Stride = (planes[i].Stride + align - 1) / align * align
		planes[i].Offset = off
		off += uint64(planes[i].Stride) * uint64(planes[i].Rows)
		off = (off + uint64(align) - 1) / uint64(align) * uint64(align)
	}
	return frameSpec{w: w, h: h, format: uint8(f), planes: planes, dataOffset: 256, dataSize: off, planesCount: -1}
}

func TestGoldenFrameDecodesEveryReleaseTwoField(t *testing.T) {
	msg := golden(t, "frame_v2")
	f, err := DecodeFrame(msg)
	if err != nil {
		t.Fatal(err)
	}
	want := Frame{Seq: 41, TimestampNs: 1700000000123456789, Width: 6, Height: 4, Format: I420, Pts: -1001,
		TimeBase: Rational{1, 30000}, Duration: 1001, Keyframe: true, ColorMatrix: 1, ColorRange: RangeLimited,
		ColorPrimaries: 1, ColorTransfer: 1, SampleAspectRatio: Rational{4, 3}, Rotation: 90,
		FieldOrder: FieldOrderTopFirst}
	got := f
	got.Planes, got.DataOffset, got.Pixels, got.image = nil, 0, nil, nil
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Fatalf("decoded\n%+v\nwant\n%+v", got, want)
	}
	// I420 6x4: Y 6x4, U and V 3x2, packed from data_offset
	d := f.DataOffset
	if fmt.Sprint(f.Planes) != fmt.Sprint([]Plane{{d, 6, 4}, {d + 24, 3, 2}, {d + 30, 3, 2}}) || len(f.Pixels) != 36 {
		t.Fatalf("planes %v, %d pixel bytes", f.Planes, len(f.Pixels))
	}
	// the pixel pattern of tests/golden_messages.py: byte i is (7*i + 3) mod 256
	for i, b := range f.Pixels {
		if b != byte(7*i+3) {
			t.Fatalf("pixel %d is %d", i, b)
		}
	}
	if f.ColorMatrix.String() != "BT709" || f.FieldOrder.String() != "TopFirst" || f.Format.String() != "I420" ||
		ColorMatrix(77).String() != "77" {
		t.Fatalf("names: %s %s %s", f.ColorMatrix, f.FieldOrder, f.Format)
	}
	line := f.Line()
	if !strings.HasPrefix(line, "frame seq=41 ts=1700000000123456789 size=6x4 format=7 pts=-1001 time_base=1/30000 "+
		"duration=1001 key=1 matrix=1 range=1 primaries=1 transfer=1 sar=4/3 rotation=90 field_order=2 crc=") ||
		!strings.HasSuffix(line, fmt.Sprintf("crc=%08x", crc32.ChecksumIEEE(f.Pixels))) { // packed: rows = pixels
		t.Fatalf("line %q", line)
	}
}

func TestReleaseOneFramesDecodeWithTheMediaDefaults(t *testing.T) {
	// written by this package's FrameWriter (release-1 fields only) and by release 1's generated code
	fw, err := NewFrameWriter(7, 5, NV12)
	if err != nil {
		t.Fatal(err)
	}
	a := make([]byte, fw.MessageSize())
	fw.Write(a, 1, 2)

	b := flatbuffers.NewBuilder(256)
	frame_v1.FrameStartPlanesVector(b, 1)
	frame_v1.CreatePlane(b, 128, 9, 2)
	pv := b.EndVector(1)
	frame_v1.FrameStart(b)
	frame_v1.FrameAddSeq(b, 1)
	frame_v1.FrameAddWidth(b, 3)
	frame_v1.FrameAddHeight(b, 2)
	frame_v1.FrameAddPixelFormat(b, frame_v1.PixelFormatRGB24)
	frame_v1.FrameAddPlanes(b, pv)
	frame_v1.FrameAddDataOffset(b, 128)
	frame_v1.FrameAddDataSize(b, 18)
	b.FinishWithFileIdentifier(frame_v1.FrameEnd(b), []byte(frame_v1.FrameIdentifier))
	old := make([]byte, 128+18)
	copy(old, b.FinishedBytes())

	for i, msg := range [][]byte{a, old} {
		f, err := DecodeFrame(msg)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if f.Pts != NoPTS || f.TimeBase.Known() || f.Duration != 0 || f.Keyframe || f.ColorMatrix != MatrixUnspecified ||
			f.ColorRange != RangeUnspecified || f.ColorPrimaries != PrimariesUnspecified ||
			f.ColorTransfer != TransferUnspecified || f.SampleAspectRatio.Known() || f.Rotation != 0 ||
			f.FieldOrder != FieldOrderUnknown {
			t.Fatalf("frame %d: release-2 fields not at their defaults: %+v", i, f)
		}
		if !strings.Contains(f.Line(), " pts=- time_base=- duration=0 key=0 matrix=2 range=0 primaries=2 transfer=2 "+
			"sar=- rotation=0 field_order=0 ") {
			t.Fatalf("frame %d: %s", i, f.Line())
		}
	}
}

func TestReleaseOneGeneratedCodeReadsTheNewGoldenFrame(t *testing.T) {
	msg := golden(t, "frame_v2")
	f, err := DecodeFrame(msg)
	if err != nil {
		t.Fatal(err)
	}
	old := frame_v1.GetRootAsFrame(msg, 0)
	var p frame_v1.Plane
	for i := range f.Planes {
		old.Planes(&p, i)
		if (Plane{p.Offset(), p.Stride(), p.Rows()}) != f.Planes[i] {
			t.Fatalf("plane %d: %v", i, f.Planes[i])
		}
	}
	if old.Seq() != f.Seq || old.TimestampNs() != f.TimestampNs || old.Width() != 6 || old.Height() != 4 ||
		uint8(old.PixelFormat()) != uint8(f.Format) || old.DataOffset() != f.DataOffset ||
		old.DataSize() != uint64(len(f.Pixels)) || old.PlanesLength() != 3 {
		t.Fatal("release 1's reader disagrees")
	}
}

func TestEveryPixelFormatHasTheProtocolsPlanes(t *testing.T) {
	// 5x3 (odd sizes: chroma rounds up), 6x3 for the 4:2:2 packed formats (even width)
	cases := map[PixelFormat][]Plane{
		GRAY8: {{0, 5, 3}}, RGB24: {{0, 15, 3}}, BGR24: {{0, 15, 3}}, RGBA32: {{0, 20, 3}}, BGRA32: {{0, 20, 3}},
		NV12: {{0, 5, 3}, {15, 6, 2}}, I420: {{0, 5, 3}, {15, 3, 2}, {21, 3, 2}},
		YUYV422: {{0, 12, 3}}, UYVY422: {{0, 12, 3}},
		P010: {{0, 10, 3}, {30, 12, 2}}, YUV422P: {{0, 5, 3}, {15, 3, 3}, {24, 3, 3}},
		YUV444P: {{0, 5, 3}, {15, 5, 3}, {30, 5, 3}}, GRAY16: {{0, 10, 3}}, RGB48: {{0, 30, 3}},
		YUV420P10: {{0, 10, 3}, {30, 6, 2}, {42, 6, 2}},
	}
	if len(cases) != 15 {
		t.Fatal("a format is missing")
	}
	for f, want := range cases {
		w := uint32(5)
		if f == YUYV422 || f == UYVY422 {
			w = 6
			if _, err := planeLayout(f, 5, 3); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "even width") {
				t.Fatalf("%s with an odd width: %v", f, err)
			}
		}
		got, err := planeLayout(f, w, 3)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: %v %v, want %v", f, got, err, want)
		}
		if g, ok := ParsePixelFormat(f.String()); !ok || g != f {
			t.Fatalf("ParsePixelFormat(%s)", f)
		}
		// written by FrameWriter and with padded rows: both decode, the image rows are the same bytes
		fw, err := NewFrameWriter(w, 3, f)
		if err != nil {
			t.Fatal(err)
		}
		packed := make([]byte, fw.MessageSize())
		px := fw.Write(packed, 1, 2)
		padded := buildFrame(packedSpec(f, w, 3, 64))
		pf, err := DecodeFrame(padded)
		if err != nil {
			t.Fatalf("%s padded: %v", f, err)
		}
		for i := range px {
			px[i] = byte(i*7 + 1)
		}
		k := 0
		for p := range want {
			for r := 0; r < pf.ImageRows(p); r++ {
				row := pf.Row(p, r)
				copy(row, px[k:k+len(row)])
				k += len(row)
			}
		}
		ff, err := DecodeFrame(packed)
		if err != nil || k != len(px) || ff.RowsCRC() != pf.RowsCRC() || ff.RowsCRC() != crc32.ChecksumIEEE(px) ||
			pf.Row(len(want), 0) != nil || pf.Row(0, pf.ImageRows(0)) != nil {
			t.Fatalf("%s: %v, crc %08x %08x", f, err, ff.RowsCRC(), pf.RowsCRC())
		}
	}
	for name, f := range map[string]PixelFormat{"yuv420p": I420, "p010le": P010, "gray16le": GRAY16, "nv12": NV12,
		"yuv420P10": YUV420P10, "rgba32": RGBA32} {
		if g, ok := ParsePixelFormat(name); !ok || g != f {
			t.Fatalf("ParsePixelFormat(%q) = %v", name, g)
		}
	}
	if _, ok := ParsePixelFormat("Unknown"); ok {
		t.Fatal("Unknown is not a format")
	}
}

func TestMalformedFrameHeadersAreRefusedWithAReason(t *testing.T) {
	good := packedSpec(I420, 6, 4, 1)
	if _, err := DecodeFrame(buildFrame(good)); err != nil {
		t.Fatal(err)
	}
	mod := func(f func(s *frameSpec)) frameSpec {
		s := good
		s.planes = append([]Plane(nil), good.planes...)
		f(&s)
		return s
	}
	cases := []struct {
		name string
		spec frameSpec
		why  string
	}{
		{"unknown format", mod(func(s *frameSpec) { s.format = 16 }), "unknown pixel format 16"},
		{"format 0", mod(func(s *frameSpec) { s.format = 0 }), "unknown pixel format 0"},
		{"width 0", mod(func(s *frameSpec) { s.w = 0 }), "frame size 0x4"},
		{"too wide", mod(func(s *frameSpec) { s.w = MaxSide + 1 }), "outside 1..65536"},
		{"odd YUYV", frameSpec{w: 5, h: 2, format: uint8(YUYV422), planes: []Plane{{0, 10, 2}}, dataOffset: 128,
			dataSize: 20, planesCount: -1}, "even width"},
		{"two planes for I420", mod(func(s *frameSpec) { s.planesCount = 2 }), "2 planes, I420 has 3"},
		{"five planes", mod(func(s *frameSpec) { s.planesCount = 5 }), "field 5 has 5 elements (at most 4)"},
		{"short stride", mod(func(s *frameSpec) { s.planes[0].Stride = 5 }), "plane 0"},
		{"few rows", mod(func(s *frameSpec) { s.planes[2].Rows = 1 }), "plane 2"},
		{"plane before the data", mod(func(s *frameSpec) { s.planes[1].Offset = ^uint64(0) - 255 }), "plane 1"},
		{"plane past the data", mod(func(s *frameSpec) { s.planes[2].Offset = 34 }), "plane 2"},
		{"huge stride", mod(func(s *frameSpec) { s.planes[0].Stride = math.MaxUint32 }), "plane 0"},
		{"huge rows", mod(func(s *frameSpec) { s.planes[0].Rows = math.MaxUint32 }), "plane 0"},
		{"data past the message", mod(func(s *frameSpec) { s.dataSize = 37 }), ""},
		{"odd offset, 16-bit", frameSpec{w: 2, h: 1, format: uint8(GRAY16), planes: []Plane{{1, 4, 1}}, dataOffset: 128,
			dataSize: 6, planesCount: -1}, "plane 0"},
		{"odd stride, 16-bit", frameSpec{w: 2, h: 2, format: uint8(GRAY16), planes: []Plane{{0, 5, 2}}, dataOffset: 128,
			dataSize: 10, planesCount: -1}, "plane 0"},
	}
	for _, c := range cases {
		msg := buildFrame(c.spec)
		if c.name == "data past the message" {
			msg = msg[:len(msg)-1]
			c.why = "pixels [256, +37) outside the message of 292 bytes"
		}
		_, err := DecodeFrame(msg)
		if !errors.Is(err, ErrDecode) || !strings.Contains(err.Error(), c.why) ||
			!strings.Contains(err.Error(), "malformed Frame") {
			t.Errorf("%s: %v (want %q)", c.name, err, c.why)
		}
	}
	// raw header damage: identifier, root, vtable
	msg := buildFrame(good)
	for _, c := range []struct {
		at   int
		val  byte
		want string
	}{{4, 'X', "file identifier"}, {0, 0xf1, "table at 241 is misaligned"}, {2, 0x01, "table reaches 65"}} {
		bad := append([]byte(nil), msg...)
		bad[c.at] = c.val
		if _, err := DecodeFrame(bad); !errors.Is(err, ErrDecode) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("byte %d = %#x: %v", c.at, c.val, err)
		}
	}
	root := binary.LittleEndian.Uint32(msg)
	bad := append([]byte(nil), msg...)
	binary.LittleEndian.PutUint32(bad[root:], 0x7fff0000) // vtable far before the buffer
	if _, err := DecodeFrame(bad); !errors.Is(err, ErrDecode) || !strings.Contains(err.Error(), "vtable") {
		t.Errorf("vtable: %v", err)
	}
	if _, err := DecodeFrame(nil); !errors.Is(err, ErrDecode) || !strings.Contains(err.Error(), "too short") {
		t.Errorf("empty: %v", err)
	}
}

func TestReleaseTwoFieldsOfAFrameAndUnknownRatiosAreRead(t *testing.T) {
	s := packedSpec(P010, 4, 2, 64)
	s.media = true
	f, err := DecodeFrame(buildFrame(s))
	if err != nil {
		t.Fatal(err)
	}
	if f.Pts != -7 || f.TimeBase != (Rational{1, 90000}) || f.Duration != 3003 || !f.Keyframe || f.ColorMatrix != 200 ||
		f.ColorRange != RangeFull || f.ColorPrimaries != 9 || f.ColorTransfer != 16 || f.SampleAspectRatio.Known() ||
		f.Rotation != 180 || f.FieldOrder != FieldOrderBottomFirst || f.Planes[1].Stride != 64 {
		t.Fatalf("%+v", f)
	}
}

// packetMsg builds a Packet message with the generated builder.
func packetMsg(codec []byte, extradata []byte, dataOffset, dataSize uint64, total int) []byte {
	b := flatbuffers.NewBuilder(512)
	cs := b.CreateByteString(codec)
	ev := b.CreateByteVector(extradata)
	fb.PacketStart(b)
	fb.PacketAddSeq(b, 1)
	fb.PacketAddCodec(b, cs)
	fb.PacketAddDts(b, -3)
	fb.PacketAddExtradata(b, ev)
	fb.PacketAddDataOffset(b, dataOffset)
	fb.PacketAddDataSize(b, dataSize)
	b.FinishWithFileIdentifier(fb.PacketEnd(b), []byte(fb.PacketIdentifier))
	msg := make([]byte, total)
	copy(msg, b.FinishedBytes())
	return msg
}

func TestGoldenPacketAndMalformedPackets(t *testing.T) {
	msg := golden(t, "packet")
	p, err := DecodePacket(msg)
	if err != nil {
		t.Fatal(err)
	}
	if p.Seq != 42 || p.TimestampNs != 1700000000123456790 || p.Codec != "h264" || p.Pts != 3003 || p.Dts != -1001 ||
		p.Duration != 1001 || p.TimeBase != (Rational{1, 30000}) || !p.Keyframe ||
		!bytes.Equal(p.Extradata, []byte{0x01, 0x64, 0x00, 0x28, 0xff, 0xe1}) || p.Width != 1280 || p.Height != 720 ||
		len(p.Data) != 100 || p.DataOffset%64 != 0 {
		t.Fatalf("%+v", p)
	}
	for i, c := range p.Data {
		if c != byte(7*i+5) {
			t.Fatalf("byte %d", i)
		}
	}
	// the extradata is a private copy: rewriting the slot afterwards does not change it
	at := bytes.Index(msg, p.Extradata)
	msg[at] ^= 0xff
	if p.Extradata[0] != 0x01 {
		t.Fatal("Extradata aliases the message")
	}
	// a header longer than the first copy: the rest is copied, up to 4096 bytes
	big := bytes.Repeat([]byte{0xab}, 3000)
	if q, err := DecodePacket(packetMsg([]byte("av1"), big, 3136, 1, 3137)); err != nil || !bytes.Equal(q.Extradata, big) ||
		q.Codec != "av1" || len(q.Data) != 1 {
		t.Fatalf("long header: %v", err)
	}
	if q, err := DecodePacket(packetMsg([]byte("hevc"), nil, 128, 0, 128)); err != nil || q.Pts != NoPTS ||
		q.Dts != -3 || q.TimeBase.Known() || len(q.Extradata) != 0 || len(q.Data) != 0 {
		t.Fatalf("defaults: %+v %v", q, err)
	}
	for _, c := range []struct {
		name string
		msg  []byte
		why  string
	}{
		{"data past the message", packetMsg([]byte("h264"), nil, 128, 10, 137), "data [128, +10) outside the message of 137"},
		{"offset past the message", packetMsg([]byte("h264"), nil, 1<<62, 1, 200), "outside the message"},
		{"codec not UTF-8", packetMsg([]byte{'h', 0xff}, nil, 128, 0, 128), "field codec"},
		{"extradata over 4096", packetMsg([]byte("h264"), make([]byte, MaxExtradata+1), 4224, 0, 4224),
			"outside the 4096 header bytes (a reader copies at most 4096 header bytes)"},
		{"header beyond 4096 bytes", packetMsg([]byte("h264"), make([]byte, MaxExtradata), 8192, 0, 8192),
			"outside the 4096 header bytes"},
		{"extradata past a short message", packetMsg([]byte("h264"), make([]byte, 100), 256, 0, 256)[:120],
			"outside the 120 header bytes"},
		{"a Frame", buildFrame(packedSpec(GRAY8, 2, 2, 1)), "file identifier \"SHFR\", expected \"SHPK\""},
	} {
		if _, err := DecodePacket(c.msg); !errors.Is(err, ErrDecode) || !strings.Contains(err.Error(), c.why) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

type audioSpec struct {
	format               uint8
	planar               bool
	channels             uint16
	samples              uint32
	stride               uint64
	dataOffset, dataSize uint64
	total                int
}

func audioMsg(s audioSpec) []byte {
	b := flatbuffers.NewBuilder(256)
	ls := b.CreateString("stereo")
	fb.AudioStart(b)
	fb.AudioAddSeq(b, 9)
	fb.AudioAddSampleRate(b, 44100)
	fb.AudioAddSampleFormat(b, fb.SampleFormat(s.format))
	fb.AudioAddPlanar(b, s.planar)
	fb.AudioAddChannels(b, s.channels)
	fb.AudioAddChannelLayout(b, ls)
	fb.AudioAddSamples(b, s.samples)
	fb.AudioAddPlaneStride(b, s.stride)
	fb.AudioAddDataOffset(b, s.dataOffset)
	fb.AudioAddDataSize(b, s.dataSize)
	b.FinishWithFileIdentifier(fb.AudioEnd(b), []byte(fb.AudioIdentifier))
	msg := make([]byte, s.total)
	copy(msg, b.FinishedBytes())
	return msg
}

func TestGoldenAudioAndMalformedAudio(t *testing.T) {
	a, err := DecodeAudio(golden(t, "audio"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Seq != 43 || a.SampleRate != 48000 || a.Format != SampleF32 || !a.Planar || a.Channels != 2 ||
		a.ChannelLayout != "stereo" || a.Samples != 5 || a.Pts != -1024 || a.TimeBase != (Rational{1, 48000}) ||
		a.Planes() != 2 || a.PlaneStride != 64 {
		t.Fatalf("%+v", a)
	}
	// planar float32 samples 0..9 / 8: channel c holds 5c/8 .. (5c+4)/8
	for c := 0; c < 2; c++ {
		p := a.Plane(c)
		for i := 0; i < 5; i++ {
			if got := math.Float32frombits(binary.LittleEndian.Uint32(p[4*i:])); got != float32(5*c+i)/8 {
				t.Fatalf("channel %d sample %d: %v", c, i, got)
			}
		}
	}
	if a.Plane(2) != nil || a.Plane(-1) != nil {
		t.Fatal("plane out of range")
	}
	il, err := DecodeAudio(audioMsg(audioSpec{format: uint8(SampleS16), channels: 6, samples: 10, dataOffset: 128,
		dataSize: 120, total: 248}))
	if err != nil || il.Planes() != 1 || len(il.Plane(0)) != 120 || il.Pts != NoPTS || il.TimeBase.Known() {
		t.Fatalf("interleaved: %+v %v", il, err)
	}
	for _, c := range []struct {
		name string
		s    audioSpec
		why  string
	}{
		{"unknown format", audioSpec{format: 7, channels: 1, samples: 1, dataOffset: 128, dataSize: 8, total: 136},
			"unknown sample format 7"},
		{"no channels", audioSpec{format: 1, channels: 0, samples: 1, dataOffset: 128, dataSize: 8, total: 136},
			"0 channels"},
		{"65 channels", audioSpec{format: 1, channels: 65, samples: 1, dataOffset: 128, dataSize: 65, total: 193},
			"65 channels"},
		{"data past the message", audioSpec{format: 1, channels: 1, samples: 8, dataOffset: 128, dataSize: 9, total: 136},
			"outside the message"},
		{"interleaved too short", audioSpec{format: 2, channels: 2, samples: 8, dataOffset: 128, dataSize: 31, total: 159},
			"do not fit 31 bytes"},
		{"planar stride short", audioSpec{format: 4, planar: true, channels: 2, samples: 8, stride: 28, dataOffset: 128,
			dataSize: 64, total: 192}, "plane stride 28"},
		{"planar stride odd", audioSpec{format: 2, planar: true, channels: 2, samples: 2, stride: 5, dataOffset: 128,
			dataSize: 10, total: 138}, "plane stride 5"},
		{"planar stride overflows", audioSpec{format: 8 - 4, planar: true, channels: 3, samples: 1,
			stride: 1 << 63, dataOffset: 128, dataSize: 8, total: 136}, "plane stride 9223372036854775808"},
		{"planar last plane short", audioSpec{format: 4, planar: true, channels: 2, samples: 8, stride: 32,
			dataOffset: 128, dataSize: 63, total: 191}, "do not fit 63 bytes"},
		{"misaligned data", audioSpec{format: 3, channels: 1, samples: 1, dataOffset: 130, dataSize: 4, total: 134},
			"at 130"},
	} {
		if _, err := DecodeAudio(audioMsg(c.s)); !errors.Is(err, ErrDecode) || !strings.Contains(err.Error(), c.why) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

func TestTruncatedMessagesAreRefusedNeverAPanic(t *testing.T) {
	for _, name := range []string{"frame_v2", "packet", "audio"} {
		msg := golden(t, name)
		for n := 0; n < len(msg); n++ {
			cut := msg[:n:n]
			_, e1 := DecodeFrame(cut)
			_, e2 := DecodePacket(cut)
			_, e3 := DecodeAudio(cut)
			if e1 == nil || e2 == nil || e3 == nil {
				t.Fatalf("%s cut at %d decoded", name, n)
			}
		}
	}
}

// TestHeaderRewrittenByAPeerDuringDecode: a hostile process keeps rewriting the header bytes of a
// committed Frame message while this one decodes it again and again: every decode is a frame
// inside the message or ErrDecode, never a panic or an out-of-range slice.
func TestHeaderRewrittenByAPeerDuringDecode(t *testing.T) {
	name := uniqueName(t)
	fw, _ := NewFrameWriter(64, 8, I420)
	c := mustCreate(t, name, Config{SlotSize: fw.MessageSize(), Capacity: 2})
	r, _ := c.Reader()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SHMCHAN_GO_CHILD_HOSTILE="+name)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGKILL); _ = cmd.Wait() }()
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("child: %q %v", buf, err)
	}
	m, err := r.Recv(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var ok, bad int
	for start := time.Now(); time.Since(start) < 500*time.Millisecond || ok == 0 || bad == 0; {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("%d good and %d refused decodes: the peer did not rewrite the header", ok, bad)
		}
		f, err := DecodeFrame(m.Data)
		if err != nil {
			if !errors.Is(err, ErrDecode) {
				t.Fatal(err)
			}
			bad++
			continue
		}
		ok++
		for p := range f.Planes {
			for row := 0; row < f.ImageRows(p); row++ {
				if f.Row(p, row) == nil {
					t.Fatalf("plane %d row %d missing", p, row)
				}
			}
		}
		_ = f.RowsCRC()
	}
	t.Logf("%d decodes, %d refused", ok, bad)
}

// hostileChild: the writer side of TestHeaderRewrittenByAPeerDuringDecode, in a child process. It
// commits one good frame, then flips random header bytes, restoring the good header now and then,
// forever.
func hostileChild(name string) {
	c, err := Open(name, OpenOptions{})
	if err != nil {
		os.Exit(3)
	}
	w, err := c.Writer()
	if err != nil {
		os.Exit(3)
	}
	fw, _ := NewFrameWriter(64, 8, I420)
	msg, err := w.Reserve(ctx, int(fw.MessageSize()), time.Second)
	if err != nil {
		os.Exit(3)
	}
	fw.Write(msg, 1, 2)
	good := append([]byte(nil), msg[:fw.DataOffset]...)
	if err := w.Commit(int(fw.MessageSize())); err != nil {
		os.Exit(3)
	}
	fmt.Println("ready")
	rng := rand.New(rand.NewPCG(1, 2))
	for {
		for k := 0; k < 1+rng.IntN(4); k++ {
			msg[rng.IntN(len(good))] = byte(rng.Uint32())
		}
		if rng.IntN(4) == 0 { // damage accumulates for a few rounds, then the good header is back
			copy(msg, good)
		}
	}
}

// BenchmarkDecodeFrame: one 1080p I420 frame header (the pixels are not touched).
func BenchmarkDecodeFrame(b *testing.B) {
	fw, _ := NewFrameWriter(1920, 1080, I420)
	msg := make([]byte, fw.MessageSize())
	fw.Write(msg, 1, 2)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeFrame(msg); err != nil {
			b.Fatal(err)
		}
	}
}
