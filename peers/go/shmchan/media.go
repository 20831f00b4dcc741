// SPDX-License-Identifier: MIT
//go:build linux && amd64

package shmchan

import (
	"math"
	"math/bits"
	"strconv"

	"github.com/shmchan/shmchan/peers/go/internal/fb"
)

// NoPTS marks an absent presentation or decoding time (FFmpeg's AV_NOPTS_VALUE): the default of
// the pts and dts fields of Frame, Packet and Audio messages.
const NoPTS int64 = math.MinInt64

// Rational is a time base (seconds per tick) or an aspect ratio. Decoders give the zero value when
// the message has none or its denominator is not positive (unknown).
type Rational struct {
	Num, Den int32
}

// Known reports whether r holds a value (a positive denominator).
func (r Rational) Known() bool { return r.Den > 0 }

// String is "num/den", or "-" when unknown.
func (r Rational) String() string {
	if !r.Known() {
		return "-"
	}
	return strconv.Itoa(int(r.Num)) + "/" + strconv.Itoa(int(r.Den))
}

func rational(r *fb.Rational) Rational {
	if r == nil || r.Den() <= 0 {
		return Rational{}
	}
	return Rational{r.Num(), r.Den()}
}

// mulAdd is a*b + c, and false when it does not fit 64 bits.
func mulAdd(a, b, c uint64) (uint64, bool) {
	hi, lo := bits.Mul64(a, b)
	sum, carry := bits.Add64(lo, c, 0)
	return sum, hi == 0 && carry == 0
}

// payload is msg[off, off+size), or ErrDecode when that is not inside msg.
func payload(what string, msg []byte, off, size uint64) ([]byte, error) {
	n := uint64(len(msg))
	if off > n || size > n-off {
		return nil, errf(ErrDecode, "malformed %s: data [%d, +%d) outside the message of %d bytes", what, off, size, n)
	}
	return msg[off : off+size : off+size], nil
}

// MaxExtradata is the most codec configuration bytes a Packet message carries.
const MaxExtradata = 4096

// maxName bounds the codec and channel layout names.
const maxName = 256

// Packet is a decoded Packet message: one compressed packet. Data is a view of the message's
// compressed bytes; the other fields, Extradata included, come from a private copy of the header.
type Packet struct {
	Seq, TimestampNs uint64
	Codec            string // FFmpeg's codec name: "h264", "hevc", "mjpeg", "aac", ...
	Pts, Dts         int64  // in TimeBase units; NoPTS: none
	Duration         int64  // in TimeBase units; 0: unknown
	TimeBase         Rational
	Keyframe         bool
	Extradata        []byte // the codec configuration (avcC, hvcC, ...); empty when none
	Width, Height    uint32 // video: frame size, 0 unknown
	DataOffset       uint64
	Data             []byte
}

var packetFields = []fieldSpec{{0, 8}, {1, 8}, {3, 8}, {4, 8}, {5, 8}, {6, 8}, {7, 1}, {9, 8}, {10, 8}, {11, 4}, {12, 4}}

// DecodePacket verifies and decodes a Packet message (docs/protocol.md): ErrDecode, saying what is
// out of place, when it is malformed.
func DecodePacket(msg []byte) (Packet, error) {
	v := verifyMessage(msg, "Packet", fb.PacketIdentifier, func(v *verifier, root uint64) {
		v.fields(root, packetFields)
		v.text(root, 2, "codec", maxName)
		v.vector(root, 8, 1, MaxExtradata)
	})
	if v.err != nil {
		return Packet{}, v.err
	}
	p := fb.GetRootAsPacket(v.b, 0)
	pk := Packet{Seq: p.Seq(), TimestampNs: p.TimestampNs(), Codec: string(p.Codec()), Pts: p.Pts(), Dts: p.Dts(),
		Duration: p.Duration(), TimeBase: rational(p.TimeBase(nil)), Keyframe: p.Keyframe(),
		Extradata: p.ExtradataBytes(), Width: p.Width(), Height: p.Height(), DataOffset: p.DataOffset()}
	data, err := payload("Packet", msg, pk.DataOffset, p.DataSize())
	if err != nil {
		return Packet{}, err
	}
	pk.Data = data
	return pk, nil
}

// SampleFormat is the type of one audio sample (little-endian).
type SampleFormat uint8

const (
	SampleU8  SampleFormat = 1
	SampleS16 SampleFormat = 2
	SampleS32 SampleFormat = 3
	SampleF32 SampleFormat = 4
	SampleF64 SampleFormat = 5
	SampleS64 SampleFormat = 6
)

// Bytes is the size of one sample; 0 for an unknown format.
func (f SampleFormat) Bytes() uint64 {
	switch f {
	case SampleU8:
		return 1
	case SampleS16:
		return 2
	case SampleS32, SampleF32:
		return 4
	case SampleF64, SampleS64:
		return 8
	}
	return 0
}

func (f SampleFormat) String() string {
	return enumName(fb.EnumNamesSampleFormat, fb.SampleFormat(f))
}

// MaxAudioChannels is the most channels an Audio message has.
const MaxAudioChannels = 64

// Audio is a decoded Audio message: a block of samples. Data is a view of the message's samples
// (data_offset to data_offset + data_size); the other fields come from a private copy of the header.
type Audio struct {
	Seq, TimestampNs uint64
	SampleRate       uint32 // per second, per channel
	Format           SampleFormat
	Planar           bool // one plane per channel; otherwise one plane, channels interleaved
	Channels         uint16
	ChannelLayout    string // FFmpeg's name ("mono", "stereo", "5.1", ...); empty: unknown
	Samples          uint32 // per channel
	PlaneStride      uint64 // planar: bytes from one channel's plane to the next
	Pts              int64  // in TimeBase units; NoPTS: none
	TimeBase         Rational
	DataOffset       uint64
	Data             []byte
}

// Planes is the number of sample planes: Channels when planar, else 1.
func (a *Audio) Planes() int {
	if a.Planar {
		return int(a.Channels)
	}
	return 1
}

// Plane returns the samples of plane i, a view of Data: channel i's when planar, every channel's
// interleaved (i = 0) otherwise; nil when i is out of range.
func (a *Audio) Plane(i int) []byte {
	if i < 0 || i >= a.Planes() {
		return nil
	}
	row := uint64(a.Samples) * a.Format.Bytes()
	if !a.Planar {
		row *= uint64(a.Channels)
	}
	start := uint64(i) * a.PlaneStride
	return a.Data[start : start+row : start+row]
}

var audioFields = []fieldSpec{{0, 8}, {1, 8}, {2, 4}, {3, 1}, {4, 1}, {5, 2}, {7, 4}, {8, 8}, {9, 8}, {10, 8}, {11, 8}, {12, 8}}

// DecodeAudio verifies and decodes an Audio message (docs/protocol.md): a known sample format, 1 to
// MaxAudioChannels channels, and every channel's samples inside the data, itself inside the
// message; ErrDecode, saying what is out of place, otherwise.
func DecodeAudio(msg []byte) (Audio, error) {
	v := verifyMessage(msg, "Audio", fb.AudioIdentifier, func(v *verifier, root uint64) {
		v.fields(root, audioFields)
		v.text(root, 6, "channel_layout", maxName)
	})
	if v.err != nil {
		return Audio{}, v.err
	}
	a := fb.GetRootAsAudio(v.b, 0)
	au := Audio{Seq: a.Seq(), TimestampNs: a.TimestampNs(), SampleRate: a.SampleRate(),
		Format: SampleFormat(a.SampleFormat()), Planar: a.Planar(), Channels: a.Channels(),
		ChannelLayout: string(a.ChannelLayout()), Samples: a.Samples(), PlaneStride: a.PlaneStride(), Pts: a.Pts(),
		TimeBase: rational(a.TimeBase(nil)), DataOffset: a.DataOffset()}
	bps := au.Format.Bytes()
	if bps == 0 {
		return Audio{}, errf(ErrDecode, "malformed Audio: unknown sample format %d", au.Format)
	}
	if au.Channels == 0 || au.Channels > MaxAudioChannels {
		return Audio{}, errf(ErrDecode, "malformed Audio: %d channels (1..%d)", au.Channels, MaxAudioChannels)
	}
	data, err := payload("Audio", msg, au.DataOffset, a.DataSize())
	if err != nil {
		return Audio{}, err
	}
	ch, row := uint64(au.Channels), uint64(au.Samples)*bps
	var need uint64
	fits := true
	if au.Planar {
		need, fits = mulAdd(au.PlaneStride, ch-1, row)
		fits = fits && au.PlaneStride >= row && au.PlaneStride%bps == 0
	} else {
		need = row * ch // < 2^32 * 8 * 64
	}
	if !fits || need > uint64(len(data)) || au.DataOffset%bps != 0 {
		return Audio{}, errf(ErrDecode, "malformed Audio: %d samples x %d channels of %s (planar %t, plane stride %d) "+
			"do not fit %d bytes at %d", au.Samples, au.Channels, au.Format, au.Planar, a.PlaneStride(), len(data),
			au.DataOffset)
	}
	au.Data = data
	return au, nil
}
