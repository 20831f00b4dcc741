// SPDX-License-Identifier: MIT
//go:build linux && amd64

package shmchan

import (
	"strings"

	flatbuffers "github.com/google/flatbuffers/go"

	"github.com/shmchan/shmchan/peers/go/internal/fb"
)

// DataAlign: a Frame's or Tensor's payload starts at a multiple of 64 from the slot's first byte.
const DataAlign = 64

// PixelFormat of a Frame.
type PixelFormat uint8

const (
	GRAY8  PixelFormat = 1
	RGB24  PixelFormat = 2
	BGR24  PixelFormat = 3
	RGBA32 PixelFormat = 4
	BGRA32 PixelFormat = 5
	NV12   PixelFormat = 6
	I420   PixelFormat = 7
)

// ParsePixelFormat accepts the names of docs/protocol.md (GRAY8, RGB24, ...).
func ParsePixelFormat(s string) (PixelFormat, bool) {
	for f := GRAY8; f <= I420; f++ {
		if strings.EqualFold(f.String(), s) {
			return f, true
		}
	}
	return 0, false
}

func (f PixelFormat) String() string {
	return fb.EnumNamesPixelFormat[fb.PixelFormat(f)]
}

// Plane is one plane of a frame: offset from the message start, bytes per row, rows.
type Plane struct {
	Offset uint64
	Stride uint32
	Rows   uint32
}

// planeLayout is the packed layout of a format, offsets from the pixel area.
func planeLayout(f PixelFormat, w, h uint32) ([]Plane, bool) {
	if w == 0 || h == 0 || w > 65536 || h > 65536 {
		return nil, false
	}
	cw, ch := (w+1)/2, (h+1)/2
	y := uint64(w) * uint64(h)
	switch f {
	case GRAY8:
		return []Plane{{0, w, h}}, true
	case RGB24, BGR24:
		return []Plane{{0, 3 * w, h}}, true
	case RGBA32, BGRA32:
		return []Plane{{0, 4 * w, h}}, true
	case NV12:
		return []Plane{{0, w, h}, {y, 2 * cw, ch}}, true
	case I420:
		return []Plane{{0, w, h}, {y, cw, ch}, {y + uint64(cw)*uint64(ch), cw, ch}}, true
	}
	return nil, false
}

// FrameWriter builds Frame headers for one geometry; the pixels go at DataOffset.
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
	planes, ok := planeLayout(f, w, h)
	if !ok {
		return nil, errf(ErrInvalid, "frame %dx%d of format %d", w, h, f)
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

// Frame is a decoded Frame message; Pixels is a view of the message's payload.
type Frame struct {
	Seq, TimestampNs uint64
	Width, Height    uint32
	Format           PixelFormat
	Planes           []Plane
	DataOffset       uint64
	Pixels           []byte
}

// DecodeFrame verifies and decodes a Frame message in place (docs/protocol.md, "Frame and Tensor
// messages"); ErrDecode if anything is out of place.
func DecodeFrame(msg []byte) (Frame, error) {
	v := &verifier{b: msg}
	pos, ok := v.root(fb.FrameIdentifier)
	if !ok {
		return Frame{}, v.err
	}
	for _, f := range []struct {
		id   int
		size uint64
	}{{0, 8}, {1, 8}, {2, 4}, {3, 4}, {4, 1}, {6, 8}, {7, 8}} {
		v.field(pos, f.id, f.size)
	}
	nplanes := v.vector(pos, 5, 16, 4)
	if v.err != nil {
		return Frame{}, v.err
	}
	f := fb.GetRootAsFrame(msg, 0)
	fr := Frame{Seq: f.Seq(), TimestampNs: f.TimestampNs(), Width: f.Width(), Height: f.Height(),
		Format: PixelFormat(f.PixelFormat()), DataOffset: f.DataOffset()}
	size := f.DataSize()
	want, ok := planeLayout(fr.Format, fr.Width, fr.Height)
	n := uint64(len(msg))
	if !ok || fr.DataOffset > n || size > n-fr.DataOffset || nplanes != uint64(len(want)) {
		return Frame{}, errf(ErrDecode, "Frame pixels or planes do not fit the message")
	}
	var p fb.Plane
	for i := range want {
		f.Planes(&p, i)
		pl := Plane{p.Offset(), p.Stride(), p.Rows()}
		rowEnd := pl.Offset + uint64(pl.Stride)*uint64(max(pl.Rows, 1)-1) + uint64(want[i].Stride)
		if pl.Rows < want[i].Rows || pl.Stride < want[i].Stride || pl.Offset < fr.DataOffset ||
			pl.Offset > 1<<48 || rowEnd > fr.DataOffset+size {
			return Frame{}, errf(ErrDecode, "Frame plane %d does not fit the pixel area", i)
		}
		fr.Planes = append(fr.Planes, pl)
	}
	fr.Pixels = msg[fr.DataOffset : fr.DataOffset+size : fr.DataOffset+size]
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

// DecodeTensor verifies and decodes a Tensor message in place.
func DecodeTensor(msg []byte) (Tensor, error) {
	v := &verifier{b: msg}
	pos, ok := v.root(fb.TensorIdentifier)
	if !ok {
		return Tensor{}, v.err
	}
	for _, f := range []struct {
		id   int
		size uint64
	}{{0, 1}, {3, 8}, {4, 8}, {5, 8}, {6, 8}} {
		v.field(pos, f.id, f.size)
	}
	ns, nt := v.vector(pos, 1, 8, 32), v.vector(pos, 2, 8, 32)
	if v.err != nil {
		return Tensor{}, v.err
	}
	t := fb.GetRootAsTensor(msg, 0)
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
