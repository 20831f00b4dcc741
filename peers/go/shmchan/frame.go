// SPDX-License-Identifier: MIT
//go:build linux && amd64

package shmchan

import (
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"

	flatbuffers "github.com/google/flatbuffers/go"

	"github.com/shmchan/shmchan/peers/go/internal/fb"
)

// DataAlign: a Frame's or Tensor's payload starts at a multiple of 64 from the slot's first byte.
const DataAlign = 64

// PixelFormat of a Frame (docs/protocol.md, the PixelFormat table). Formats 8-15 came with release 2.
type PixelFormat uint8

const (
	GRAY8     PixelFormat = 1
	RGB24     PixelFormat = 2
	BGR24     PixelFormat = 3
	RGBA32    PixelFormat = 4
	BGRA32    PixelFormat = 5
	NV12      PixelFormat = 6
	I420      PixelFormat = 7
	YUYV422   PixelFormat = 8
	UYVY422   PixelFormat = 9
	P010      PixelFormat = 10
	YUV422P   PixelFormat = 11
	YUV444P   PixelFormat = 12
	GRAY16    PixelFormat = 13
	RGB48     PixelFormat = 14
	YUV420P10 PixelFormat = 15
)

// formatSpec: bytes per sample, whether the width must be even, and per plane the horizontal and
// vertical subsampling and the samples per pixel position.
type formatSpec struct {
	sample uint32
	even   bool
	planes []struct{ xs, ys, n uint32 }
}

var (
	one     = []struct{ xs, ys, n uint32 }{{1, 1, 1}}
	three   = []struct{ xs, ys, n uint32 }{{1, 1, 3}}
	four    = []struct{ xs, ys, n uint32 }{{1, 1, 4}}
	packed2 = []struct{ xs, ys, n uint32 }{{1, 1, 2}}
	semi420 = []struct{ xs, ys, n uint32 }{{1, 1, 1}, {2, 2, 2}}
	p420    = []struct{ xs, ys, n uint32 }{{1, 1, 1}, {2, 2, 1}, {2, 2, 1}}
	p422    = []struct{ xs, ys, n uint32 }{{1, 1, 1}, {2, 1, 1}, {2, 1, 1}}
	p444    = []struct{ xs, ys, n uint32 }{{1, 1, 1}, {1, 1, 1}, {1, 1, 1}}

	formats = map[PixelFormat]formatSpec{
		GRAY8: {1, false, one}, RGB24: {1, false, three}, BGR24: {1, false, three},
		RGBA32: {1, false, four}, BGRA32: {1, false, four}, NV12: {1, false, semi420}, I420: {1, false, p420},
		YUYV422: {1, true, packed2}, UYVY422: {1, true, packed2}, P010: {2, false, semi420},
		YUV422P: {1, false, p422}, YUV444P: {1, false, p444}, GRAY16: {2, false, one}, RGB48: {2, false, three},
		YUV420P10: {2, false, p420},
	}

	// FFmpeg's names of the formats (the protocol's table), for ParsePixelFormat.
	ffmpegNames = map[string]PixelFormat{
		"gray": GRAY8, "rgb24": RGB24, "bgr24": BGR24, "rgba": RGBA32, "bgra": BGRA32, "nv12": NV12,
		"yuv420p": I420, "yuyv422": YUYV422, "uyvy422": UYVY422, "p010le": P010, "yuv422p": YUV422P,
		"yuv444p": YUV444P, "gray16le": GRAY16, "rgb48le": RGB48, "yuv420p10le": YUV420P10,
	}
)

// MaxSide is the largest frame width or height.
const MaxSide = 1 << 16

// maxPlanes: a Frame's planes vector holds at most this many (the formats have 1 to 3).
const maxPlanes = 4

// ParsePixelFormat accepts the names of docs/protocol.md (GRAY8, RGB24, ..., YUV420P10, any case)
// and FFmpeg's (gray, yuv420p, nv12, p010le, ...).
func ParsePixelFormat(s string) (PixelFormat, bool) {
	if f, ok := ffmpegNames[s]; ok {
		return f, true
	}
	for f := range formats {
		if strings.EqualFold(f.String(), s) {
			return f, true
		}
	}
	return 0, false
}

// String is the format's name in the schema, or its number when it has none.
func (f PixelFormat) String() string {
	if s, ok := fb.EnumNamesPixelFormat[fb.PixelFormat(f)]; ok {
		return s
	}
	return strconv.Itoa(int(f))
}

// SampleBytes is 1, or 2 for the 16-bit formats (P010, GRAY16, RGB48, YUV420P10); 0 for a format
// this package cannot lay out.
func (f PixelFormat) SampleBytes() uint32 { return formats[f].sample }

// Plane is one plane of a frame: its first byte from the message start, bytes from one row start
// to the next, rows.
type Plane struct {
	Offset uint64
	Stride uint32
	Rows   uint32
}

// planeLayout is the packed layout of a format: offsets from the pixel area, strides equal to the
// rows' bytes, the format's rows.
func planeLayout(f PixelFormat, w, h uint32) ([]Plane, error) {
	if w == 0 || h == 0 || w > MaxSide || h > MaxSide {
		return nil, errf(ErrInvalid, "frame size %dx%d outside 1..%d", w, h, MaxSide)
	}
	spec, ok := formats[f]
	if !ok {
		return nil, errf(ErrInvalid, "unknown pixel format %d", f)
	}
	if spec.even && w%2 != 0 {
		return nil, errf(ErrInvalid, "%s needs an even width, got %d", f, w)
	}
	out := make([]Plane, len(spec.planes))
	off := uint64(0)
	for i, p := range spec.planes {
		row := spec.sample * p.n * ((w + p.xs - 1) / p.xs)
		rows := (h + p.ys - 1) / p.ys
		out[i] = Plane{off, row, rows}
		off += uint64(row) * uint64(rows)
	}
	return out, nil
}

// FrameWriter builds Frame headers for one geometry; the pixels go at DataOffset. It writes the
// release-1 fields only (the media fields keep their defaults), as every shmchan producer does.
type FrameWriter struct {
	Width, Height uint32
	Format        PixelFormat
	DataOffset    uint64
	DataSize      uint64
	planes        []Plane
	b             *flatbuffers.Builder
}

// NewFrameWriter computes the message layout of a width x height frame of format f.
func NewFrameWriter(w, h uint32, f PixelFormat) (*FrameWriter, error) {
	planes, err := planeLayout(f, w, h)
	if err != nil {
		return nil, err
	}
	last := planes[len(planes)-1]
	fw := &FrameWriter{Width: w, Height: h, Format: f, planes: planes, b: flatbuffers.NewBuilder(512),
		DataSize: last.Offset + uint64(last.Stride)*uint64(last.Rows)}
	off := uint64(DataAlign)
	for { // non-default values in every field: the size does not depend on them
		n := uint64(len(fw.build(^uint64(0), ^uint64(0), off)))
		need := (n + DataAlign - 1) / DataAlign * DataAlign
		if need <= off {
			break
		}
		off = need
	}
	fw.DataOffset = off
	return fw, nil
}

// MessageSize is the committed length of one frame message.
func (fw *FrameWriter) MessageSize() uint64 { return fw.DataOffset + fw.DataSize }

func (fw *FrameWriter) build(seq, ts, dataOffset uint64) []byte {
	b := fw.b
	b.Reset()
	fb.FrameStartPlanesVector(b, len(fw.planes))
	for i := len(fw.planes) - 1; i >= 0; i-- {
		p := fw.planes[i]
		fb.CreatePlane(b, p.Offset+dataOffset, p.Stride, p.Rows)
	}
	pv := b.EndVector(len(fw.planes))
	fb.FrameStart(b)
	fb.FrameAddSeq(b, seq)
	fb.FrameAddTimestampNs(b, ts)
	fb.FrameAddDataOffset(b, dataOffset)
	fb.FrameAddDataSize(b, fw.DataSize)
	fb.FrameAddPlanes(b, pv)
	fb.FrameAddHeight(b, fw.Height)
	fb.FrameAddWidth(b, fw.Width)
	fb.FrameAddPixelFormat(b, fb.PixelFormat(fw.Format))
	b.FinishWithFileIdentifier(fb.FrameEnd(b), []byte(fb.FrameIdentifier))
	return b.FinishedBytes()
}

// Write puts the header of frame seq into msg (at least MessageSize bytes) and returns the pixel
// area, a view of msg to fill in place.
func (fw *FrameWriter) Write(msg []byte, seq, ts uint64) []byte {
	h := fw.build(seq, ts, fw.DataOffset)
	copy(msg, h)
	clear(msg[len(h):fw.DataOffset])
	return msg[fw.DataOffset:fw.MessageSize()]
}

// ColorMatrix is an ITU-T H.273 MatrixCoefficients code point (FFmpeg's AVColorSpace): 0 RGB,
// 1 BT709, 2 Unspecified, 5 BT470BG, 6 SMPTE170M, 9 BT2020_NCL, ...
type ColorMatrix uint8

// ColorPrimaries is an H.273 ColourPrimaries code point: 1 BT709, 2 Unspecified, 9 BT2020, ...
type ColorPrimaries uint8

// ColorTransfer is an H.273 TransferCharacteristics code point: 1 BT709, 2 Unspecified, 13 SRGB,
// 16 SMPTE2084, 18 ARIB_STD_B67, ...
type ColorTransfer uint8

// ColorRange is FFmpeg's AVColorRange.
type ColorRange uint8

// FieldOrder says whether and how a frame is interlaced.
type FieldOrder uint8

// The defaults of a frame without colour information, and the values of ColorRange and FieldOrder.
// A reader accepts values its release does not name.
const (
	MatrixUnspecified    ColorMatrix    = 2
	PrimariesUnspecified ColorPrimaries = 2
	TransferUnspecified  ColorTransfer  = 2

	RangeUnspecified ColorRange = 0
	RangeLimited     ColorRange = 1 // "tv", "mpeg"
	RangeFull        ColorRange = 2 // "pc", "jpeg"

	FieldOrderUnknown     FieldOrder = 0
	FieldOrderProgressive FieldOrder = 1
	FieldOrderTopFirst    FieldOrder = 2
	FieldOrderBottomFirst FieldOrder = 3
)

func enumName[T ~uint8](names map[T]string, v T) string {
	if s, ok := names[v]; ok {
		return s
	}
	return strconv.Itoa(int(v))
}

func (v ColorMatrix) String() string {
	return enumName(fb.EnumNamesColorMatrix, fb.ColorMatrix(v))
}

func (v ColorPrimaries) String() string {
	return enumName(fb.EnumNamesColorPrimaries, fb.ColorPrimaries(v))
}

func (v ColorTransfer) String() string {
	return enumName(fb.EnumNamesColorTransfer, fb.ColorTransfer(v))
}

func (v ColorRange) String() string { return enumName(fb.EnumNamesColorRange, fb.ColorRange(v)) }

func (v FieldOrder) String() string { return enumName(fb.EnumNamesFieldOrder, fb.FieldOrder(v)) }

// Frame is a decoded Frame message. Pixels is a view of the message's payload; every other field
// was read from a private copy of the header. Fields Pts to FieldOrder came with release 2: a
// release-1 frame decodes with their defaults.
type Frame struct {
	Seq, TimestampNs uint64
	Width, Height    uint32
	Format           PixelFormat
	Planes           []Plane // as the message gives them: offsets from the message start
	DataOffset       uint64
	Pixels           []byte // [DataOffset, DataOffset + data_size) of the message

	Pts               int64    // in TimeBase units; NoPTS: none
	TimeBase          Rational // seconds per tick; the zero value: unknown
	Duration          int64    // in TimeBase units; 0: unknown
	Keyframe          bool
	ColorMatrix       ColorMatrix
	ColorRange        ColorRange
	ColorPrimaries    ColorPrimaries
	ColorTransfer     ColorTransfer
	SampleAspectRatio Rational // the zero value: unknown (square)
	Rotation          uint16   // display rotation, degrees clockwise
	FieldOrder        FieldOrder

	image []Plane // the format's layout: bytes of image per row, rows of the image
}

// Row returns the image bytes of row r of plane p (without the row's padding), a view of the
// pixels; nil when p or r is out of range.
func (f *Frame) Row(p, r int) []byte {
	if p < 0 || p >= len(f.image) || p >= len(f.Planes) || r < 0 || r >= int(f.image[p].Rows) {
		return nil
	}
	start := f.Planes[p].Offset - f.DataOffset + uint64(r)*uint64(f.Planes[p].Stride)
	return f.Pixels[start : start+uint64(f.image[p].Stride) : start+uint64(f.image[p].Stride)]
}

// ImageRows is the number of image rows of plane p (the format's, which the message may exceed).
func (f *Frame) ImageRows(p int) int {
	if p < 0 || p >= len(f.image) {
		return 0
	}
	return int(f.image[p].Rows)
}

// frameFields: the scalar and struct fields of a Frame (id, bytes), release 1 then release 2.
var frameFields = []fieldSpec{{0, 8}, {1, 8}, {2, 4}, {3, 4}, {4, 1}, {6, 8}, {7, 8},
	{8, 8}, {9, 8}, {10, 8}, {11, 1}, {12, 1}, {13, 1}, {14, 1}, {15, 1}, {16, 8}, {17, 2}, {18, 1}}

// DecodeFrame verifies and decodes a Frame message (docs/protocol.md, "Frame, Tensor, Packet and
// Audio messages"): the header is copied out of msg once and checked there, the planes are checked
// against the format and the message; ErrDecode, saying what is out of place, otherwise.
func DecodeFrame(msg []byte) (Frame, error) {
	var nplanes uint64
	v := verifyMessage(msg, "Frame", fb.FrameIdentifier, func(v *verifier, root uint64) {
		v.fields(root, frameFields)
		nplanes = v.vector(root, 5, 16, maxPlanes)
	})
	if v.err != nil {
		return Frame{}, v.err
	}
	f := fb.GetRootAsFrame(v.b, 0)
	fr := Frame{Seq: f.Seq(), TimestampNs: f.TimestampNs(), Width: f.Width(), Height: f.Height(),
		Format: PixelFormat(f.PixelFormat()), DataOffset: f.DataOffset(),
		Pts: f.Pts(), TimeBase: rational(f.TimeBase(nil)), Duration: f.Duration(), Keyframe: f.Keyframe(),
		ColorMatrix: ColorMatrix(f.ColorMatrix()), ColorRange: ColorRange(f.ColorRange()),
		ColorPrimaries: ColorPrimaries(f.ColorPrimaries()), ColorTransfer: ColorTransfer(f.ColorTransfer()),
		SampleAspectRatio: rational(f.SampleAspectRatio(nil)), Rotation: f.Rotation(),
		FieldOrder: FieldOrder(f.FieldOrder())}
	size, n := f.DataSize(), uint64(len(msg))
	if fr.DataOffset > n || size > n-fr.DataOffset {
		return Frame{}, errf(ErrDecode, "malformed Frame: pixels [%d, +%d) outside the message of %d bytes",
			fr.DataOffset, size, n)
	}
	want, err := planeLayout(fr.Format, fr.Width, fr.Height)
	if err != nil {
		return Frame{}, errf(ErrDecode, "malformed Frame: %v", strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": "))
	}
	if nplanes != uint64(len(want)) {
		return Frame{}, errf(ErrDecode, "malformed Frame: %d planes, %s has %d", nplanes, fr.Format, len(want))
	}
	end, bps := fr.DataOffset+size, uint64(fr.Format.SampleBytes())
	fr.Planes = make([]Plane, len(want))
	var p fb.Plane
	for i := range want {
		f.Planes(&p, i)
		pl := Plane{p.Offset(), p.Stride(), p.Rows()}
		row := uint64(want[i].Stride)
		// offset + stride*(rows-1) + row <= end, without overflow: each term is bounded first
		if pl.Rows < want[i].Rows || pl.Stride < want[i].Stride || pl.Offset < fr.DataOffset || pl.Offset > end ||
			row > end-pl.Offset || uint64(pl.Stride)*uint64(pl.Rows-1) > end-pl.Offset-row ||
			pl.Offset%bps != 0 || uint64(pl.Stride)%bps != 0 {
			return Frame{}, errf(ErrDecode, "malformed Frame: plane %d (offset %d, stride %d, rows %d) does not fit "+
				"a %dx%d %s frame in [%d, +%d)", i, pl.Offset, pl.Stride, pl.Rows, fr.Width, fr.Height, fr.Format,
				fr.DataOffset, size)
		}
		fr.Planes[i] = pl
	}
	fr.image = want
	fr.Pixels = msg[fr.DataOffset:end:end]
	return fr, nil
}

// Tensor is a decoded Tensor message; Data is a view of the element bytes.
type Tensor struct {
	DType            uint8
	Shape            []uint64
	Strides          []int64
	Seq, TimestampNs uint64
	Data             []byte
}

// DTypeSize is the element size of a DType code (0: unknown).
func DTypeSize(dt uint8) uint64 {
	return map[uint8]uint64{1: 1, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 4, 8: 8, 9: 8, 10: 2, 11: 4, 12: 8, 13: 8, 14: 16}[dt]
}

// EncodeTensor writes a C-contiguous tensor header into msg and returns the element area to fill
// and the message length.
func EncodeTensor(msg []byte, dt uint8, shape []uint64, seq, ts uint64) ([]byte, uint64, error) {
	es := DTypeSize(dt)
	if es == 0 {
		return nil, 0, errf(ErrInvalid, "dtype %d", dt)
	}
	size := es
	for _, d := range shape {
		size *= d
	}
	strides := make([]int64, len(shape))
	st := int64(es)
	for i := len(shape) - 1; i >= 0; i-- {
		strides[i] = st
		st *= int64(shape[i])
	}
	b := flatbuffers.NewBuilder(256)
	build := func(off uint64) []byte {
		b.Reset()
		fb.TensorStartShapeVector(b, len(shape))
		for i := len(shape) - 1; i >= 0; i-- {
			b.PrependUint64(shape[i])
		}
		sv := b.EndVector(len(shape))
		fb.TensorStartStridesVector(b, len(strides))
		for i := len(strides) - 1; i >= 0; i-- {
			b.PrependInt64(strides[i])
		}
		tv := b.EndVector(len(strides))
		fb.TensorStart(b)
		fb.TensorAddDataOffset(b, off)
		fb.TensorAddDataSize(b, size)
		fb.TensorAddSeq(b, seq)
		fb.TensorAddTimestampNs(b, ts)
		fb.TensorAddShape(b, sv)
		fb.TensorAddStrides(b, tv)
		fb.TensorAddDtype(b, fb.DType(dt))
		b.FinishWithFileIdentifier(fb.TensorEnd(b), []byte(fb.TensorIdentifier))
		return b.FinishedBytes()
	}
	off := uint64(DataAlign)
	for {
		need := (uint64(len(build(off))) + DataAlign - 1) / DataAlign * DataAlign
		if need <= off {
			break
		}
		off = need
	}
	h := build(off)
	if off+size > uint64(len(msg)) {
		return nil, 0, errf(ErrTooLarge, "a tensor of %d bytes does not fit %d", off+size, len(msg))
	}
	copy(msg, h)
	clear(msg[len(h):off])
	return msg[off : off+size], off + size, nil
}

// DecodeTensor verifies and decodes a Tensor message; its header is copied out of msg once and
// checked there, Data is a view of msg.
func DecodeTensor(msg []byte) (Tensor, error) {
	var ns, nt uint64
	v := verifyMessage(msg, "Tensor", fb.TensorIdentifier, func(v *verifier, root uint64) {
		v.fields(root, []fieldSpec{{0, 1}, {3, 8}, {4, 8}, {5, 8}, {6, 8}})
		ns, nt = v.vector(root, 1, 8, 32), v.vector(root, 2, 8, 32)
	})
	if v.err != nil {
		return Tensor{}, v.err
	}
	t := fb.GetRootAsTensor(v.b, 0)
	tn := Tensor{DType: uint8(t.Dtype()), Seq: t.Seq(), TimestampNs: t.TimestampNs()}
	off, size, n := t.DataOffset(), t.DataSize(), uint64(len(msg))
	es := DTypeSize(tn.DType)
	if es == 0 || ns != nt || off > n || size > n-off {
		return Tensor{}, errf(ErrDecode, "Tensor data or strides do not fit the message")
	}
	last, empty := uint64(0), false
	for i := 0; i < int(ns); i++ {
		d, s := t.Shape(i), t.Strides(i)
		tn.Shape, tn.Strides = append(tn.Shape, d), append(tn.Strides, s)
		if d == 0 {
			empty = true
		}
		if s < 0 || d > 1<<40 || uint64(s) > 1<<40 {
			return Tensor{}, errf(ErrDecode, "Tensor dimension %d: size %d, stride %d", i, d, s)
		}
		if d > 0 {
			last += (d - 1) * uint64(s)
		}
	}
	if !empty && last+es > size {
		return Tensor{}, errf(ErrDecode, "Tensor elements do not fit its data")
	}
	tn.Data = msg[off : off+size : off+size]
	return tn, nil
}

// RowsCRC is the crc32 (IEEE) of a frame's image rows, plane by plane, without row padding: equal
// for equal images whatever their strides.
func (f *Frame) RowsCRC() uint32 {
	crc := uint32(0)
	for p := range f.image {
		for r := 0; r < f.ImageRows(p); r++ {
			crc = crc32.Update(crc, crc32.IEEETable, f.Row(p, r))
		}
	}
	return crc
}

func optTime(t int64) string {
	if t == NoPTS {
		return "-"
	}
	return strconv.FormatInt(t, 10)
}

// Line describes the frame in one line, the same in every language's peer (docs/interop.md: the
// consumers' --verify frames and shmchan-inspect): "frame seq=.. ts=.. size=WxH format=N pts=..
// time_base=N/D duration=.. key=0|1 matrix=.. range=.. primaries=.. transfer=.. sar=N/D
// rotation=.. field_order=.. crc=XXXXXXXX", "-" for an absent pts, time base or aspect ratio.
func (f *Frame) Line() string {
	return fmt.Sprintf("frame seq=%d ts=%d size=%dx%d format=%d pts=%s time_base=%s duration=%d key=%d matrix=%d "+
		"range=%d primaries=%d transfer=%d sar=%s rotation=%d field_order=%d crc=%08x", f.Seq, f.TimestampNs,
		f.Width, f.Height, f.Format, optTime(f.Pts), f.TimeBase, f.Duration, b2i(f.Keyframe), f.ColorMatrix,
		f.ColorRange, f.ColorPrimaries, f.ColorTransfer, f.SampleAspectRatio, f.Rotation, f.FieldOrder, f.RowsCRC())
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
