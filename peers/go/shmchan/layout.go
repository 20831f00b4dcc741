// SPDX-License-Identifier: MIT
//go:build linux && amd64

package shmchan

import (
	"encoding/binary"
	"math/bits"
)

// Layout 1.0 (docs/protocol.md, "Byte map").
const (
	Magic        = 0x314E4148434D4853 // "SHMCHAN1"
	VersionMajor = 1
	VersionMinor = 0
	HeaderSize   = 1024
	LayoutPage   = 4096 // R10: a constant of the layout, not the machine's page size

	MaxCapacity       = 1 << 24
	MaxSlotSize       = 1 << 40
	MinSlotAlign      = 8
	MaxSlotAlign      = 1 << 21
	MaxTotalSize      = 1 << 46
	MaxDescriptorSize = 1 << 16
	MaxReaders        = 1024
	PlaceSize         = 128
	descriptorAlign   = 64
	smallSlotAlign    = 64

	seqWriting = ^uint64(0) // R38: meta[s].seq while the writer fills slot s
)

// Kind is the channel kind in the header (offset 12).
type Kind uint32

const (
	KindSPSC      Kind = 1
	KindBroadcast Kind = 2
	KindState     Kind = 3
)

func (k Kind) String() string {
	switch k {
	case KindSPSC:
		return "spsc"
	case KindBroadcast:
		return "broadcast"
	case KindState:
		return "state"
	}
	return "unknown"
}

// Policy is what a full BROADCAST ring does.
type Policy uint32

const (
	PolicyBlock     Policy = 0
	PolicyOverwrite Policy = 1
)

// Msync is the msync policy of a file-backed channel (flags bits 0-1, R33).
type Msync uint32

const (
	MsyncNone     Msync = 0
	MsyncAsync    Msync = 1
	MsyncSync     Msync = 2
	MsyncExplicit Msync = 3
)

const (
	flagMsyncMask = 0x3
	flagSealed    = 0x4
	flagsKnown    = flagMsyncMask | flagSealed
)

// Header offsets.
const (
	offMagic         = 0
	offVersionMajor  = 8
	offVersionMinor  = 10
	offKind          = 12
	offFlags         = 16
	offCapacity      = 20
	offSlotSize      = 24
	offSlotStride    = 32
	offSlotAlign     = 40
	offCreatorPid    = 44
	offLensOffset    = 48
	offDataOffset    = 56
	offTotalSize     = 64
	offCreatedNs     = 72
	offDescOffset    = 80
	offDescSize      = 88
	offHead          = 128
	offHeadWake      = 136
	offWMessages     = 144
	offWBytes        = 152
	offWFull         = 160
	offWAborts       = 168
	offTail          = 256
	offTailWake      = 264
	offRMessages     = 272
	offRBytes        = 280
	offREmpty        = 288
	offReaderWaiting = 384
	offWriterWaiting = 388
	offWriterState   = 512
	offWriterPid     = 516
	offWriterGen     = 520
	offReaderState   = 528
	offReaderPid     = 532
	offReaderGen     = 536
	offMaxReaders    = 640
	offPolicy        = 644
	offReadersOffset = 648
	offScanSeq       = 768
	offFloor         = 776
	offNeed          = 784
	placeState       = 0
	placePid         = 4
	placeGen         = 8
	placeCursor      = 16
	placeMessages    = 24
	placeBytes       = 32
	placeLost        = 40
	placeEmpty       = 48
	peerNone         = 0
	peerAttached     = 1
	peerClosed       = 2
	lockAttach       = 0
	lockWriter       = 1
	lockReader       = 2
	lockReaders      = 3
	lockSleepers     = lockReaders + 1024 // R21: read-locked by every counted sleeper
	maxPosition      = uint64(1) << 63    // R21a: BROADCAST and STATE positions stay below it
)

// Geometry is what a channel's header says about its shape, validated.
type Geometry struct {
	Kind             Kind
	Flags            uint32
	Capacity         uint32
	SlotSize         uint64
	SlotStride       uint64
	SlotAlign        uint32
	MaxReaders       uint32
	Policy           Policy
	LensOffset       uint64
	ReadersOffset    uint64
	DescriptorOffset uint64
	DescriptorSize   uint64
	DataOffset       uint64
	TotalSize        uint64
	VersionMinor     uint16
	CreatorPid       uint32
	CreatedNs        uint64
}

// Config describes a channel to create.
type Config struct {
	Kind       Kind   // 0: SPSC
	SlotSize   uint64 // 1 ... 2^40
	Capacity   uint32 // a power of two, 1 ... 2^24
	SlotAlign  uint32 // 0: 64 for slots under 4096 bytes, else 4096
	MaxReaders uint32 // BROADCAST: 1 ... 1024
	Policy     Policy // BROADCAST
	Msync      Msync  // file-backed channels
	Mode       uint32 // 0: 0600
	Descriptor []byte // immutable bytes, at most 65536 (a ChannelInfo: BuildChannelInfo)
}

// DefaultSlotAlign is the alignment a creator with no preference uses (R10).
func DefaultSlotAlign(slotSize uint64) uint32 {
	if slotSize < LayoutPage {
		return smallSlotAlign
	}
	return LayoutPage
}

func isPow2(v uint64) bool { return v != 0 && v&(v-1) == 0 }

// roundUp rounds v up to a multiple of the power of two a; ok is false on overflow.
func roundUp(v, a uint64) (uint64, bool) {
	t, c := bits.Add64(v, a-1, 0)
	return t &^ (a - 1), c == 0
}

// geometry computes every derived offset (R10) and checks the limits (R9).
func geometry(kind Kind, capacity uint32, slotSize uint64, slotAlign, maxReaders uint32, policy Policy,
	descSize uint64) (Geometry, error) {
	var g Geometry
	if slotSize == 0 || slotSize > MaxSlotSize {
		return g, errf(ErrInvalid, "slot size %d not in 1 ... 2^40", slotSize)
	}
	if !isPow2(uint64(capacity)) || capacity > MaxCapacity {
		return g, errf(ErrInvalid, "capacity %d is not a power of two in 1 ... 2^24", capacity)
	}
	if slotAlign == 0 {
		slotAlign = DefaultSlotAlign(slotSize)
	}
	if !isPow2(uint64(slotAlign)) || slotAlign < MinSlotAlign || slotAlign > MaxSlotAlign {
		return g, errf(ErrInvalid, "slot alignment %d is not a power of two in 8 ... 2^21", slotAlign)
	}
	if descSize > MaxDescriptorSize {
		return g, errf(ErrInvalid, "descriptor of %d bytes (the limit is 65536)", descSize)
	}
	var entry uint64
	switch kind {
	case KindSPSC:
		if maxReaders != 0 || policy != 0 {
			return g, errf(ErrInvalid, "max_readers and policy are for broadcast channels")
		}
		entry = 8
	case KindBroadcast:
		if capacity < 2 || maxReaders == 0 || maxReaders > MaxReaders || policy > PolicyOverwrite {
			return g, errf(ErrInvalid, "broadcast: capacity %d (>= 2), max_readers %d (1 ... 1024), policy %d",
				capacity, maxReaders, policy)
		}
		entry = 16
	case KindState:
		if capacity != 2 || maxReaders != 0 || policy != 0 {
			return g, errf(ErrInvalid, "state: capacity must be 2, max_readers and policy 0")
		}
		entry = 16
	default:
		return g, errf(ErrInvalid, "unknown kind %d", kind)
	}
	stride, ok := roundUp(slotSize, uint64(slotAlign))
	if !ok {
		return g, errf(ErrInvalid, "slot stride overflows")
	}
	end := uint64(HeaderSize) + uint64(capacity)*entry
	if kind == KindBroadcast {
		g.ReadersOffset, _ = roundUp(end, 128)
		end = g.ReadersOffset + uint64(maxReaders)*PlaceSize
	}
	if descSize > 0 {
		g.DescriptorOffset, _ = roundUp(end, descriptorAlign)
		end = g.DescriptorOffset + descSize
	}
	dataAlign := uint64(LayoutPage)
	if uint64(slotAlign) > dataAlign {
		dataAlign = uint64(slotAlign)
	}
	g.DataOffset, _ = roundUp(end, dataAlign)
	hi, slots := bits.Mul64(uint64(capacity), stride)
	total, c := bits.Add64(g.DataOffset, slots, 0)
	if hi != 0 || c != 0 || total > MaxTotalSize {
		return g, errf(ErrInvalid, "channel size overflows 2^46 bytes")
	}
	g.Kind, g.Capacity, g.SlotSize, g.SlotStride, g.SlotAlign = kind, capacity, slotSize, stride, slotAlign
	g.MaxReaders, g.Policy, g.LensOffset, g.DescriptorSize, g.TotalSize = maxReaders, policy, HeaderSize, descSize, total
	return g, nil
}

// ValidateHeader checks the first 1024 bytes of a channel (R9) against the object's size. It
// returns ErrNotInitialised while magic is 0, ErrIncompatible for another magic, major version,
// kind or flags, and ErrCorrupt for an impossible or inconsistent geometry. It reads every field
// once (R3): the caller passes a private copy or the live mapping alike.
func ValidateHeader(hdr []byte, fileSize uint64) (Geometry, error) {
	if len(hdr) < HeaderSize {
		return Geometry{}, errf(ErrNotInitialised, "the object holds %d bytes, less than a header", len(hdr))
	}
	le := binary.LittleEndian
	magic := le.Uint64(hdr[offMagic:])
	if magic == 0 {
		return Geometry{}, errf(ErrNotInitialised, "the header is not initialised yet (magic is zero)")
	}
	if magic != Magic {
		return Geometry{}, errf(ErrIncompatible, "bad magic 0x%016x: not a shmchan channel", magic)
	}
	major, minor := le.Uint16(hdr[offVersionMajor:]), le.Uint16(hdr[offVersionMinor:])
	if major != VersionMajor {
		return Geometry{}, errf(ErrIncompatible, "channel has layout version %d.%d, this peer reads %d.x", major, minor,
			VersionMajor)
	}
	kind := Kind(le.Uint32(hdr[offKind:]))
	if kind != KindSPSC && kind != KindBroadcast && kind != KindState {
		return Geometry{}, errf(ErrIncompatible, "unknown channel kind %d (layout %d.%d)", kind, major, minor)
	}
	flags := le.Uint32(hdr[offFlags:])
	if flags&^flagsKnown != 0 {
		return Geometry{}, errf(ErrIncompatible, "unknown header flags 0x%x (layout %d.%d)", flags, major, minor)
	}
	capacity := le.Uint32(hdr[offCapacity:])
	slotSize := le.Uint64(hdr[offSlotSize:])
	slotAlign := le.Uint32(hdr[offSlotAlign:])
	maxReaders := le.Uint32(hdr[offMaxReaders:])
	policy := Policy(le.Uint32(hdr[offPolicy:]))
	readersOffset := le.Uint64(hdr[offReadersOffset:])
	stride := le.Uint64(hdr[offSlotStride:])
	lensOffset := le.Uint64(hdr[offLensOffset:])
	dataOffset := le.Uint64(hdr[offDataOffset:])
	total := le.Uint64(hdr[offTotalSize:])
	descOffset := le.Uint64(hdr[offDescOffset:])
	descSize := le.Uint64(hdr[offDescSize:])
	if slotAlign == 0 {
		return Geometry{}, errf(ErrCorrupt, "slot alignment is zero")
	}
	want, err := geometry(kind, capacity, slotSize, slotAlign, maxReaders, policy, descSize)
	if err != nil {
		return Geometry{}, errf(ErrCorrupt, "impossible geometry: kind %d, slot_size %d, capacity %d, alignment %d, "+
			"max_readers %d, policy %d, descriptor %d bytes", kind, slotSize, capacity, slotAlign, maxReaders, policy,
			descSize)
	}
	if stride != want.SlotStride || lensOffset != want.LensOffset || dataOffset != want.DataOffset ||
		total != want.TotalSize || descOffset != want.DescriptorOffset || readersOffset != want.ReadersOffset {
		return Geometry{}, errf(ErrCorrupt, "inconsistent geometry: stride %d, lengths at %d, readers at %d, "+
			"descriptor at %d, data at %d, total %d (expected %d, %d, %d, %d, %d, %d)", stride, lensOffset,
			readersOffset, descOffset, dataOffset, total, want.SlotStride, want.LensOffset, want.ReadersOffset,
			want.DescriptorOffset, want.DataOffset, want.TotalSize)
	}
	if total > fileSize {
		return Geometry{}, errf(ErrCorrupt, "the object holds %d bytes but its header describes %d", fileSize, total)
	}
	want.Flags = flags
	want.VersionMinor = minor
	want.CreatorPid = le.Uint32(hdr[offCreatorPid:])
	want.CreatedNs = le.Uint64(hdr[offCreatedNs:])
	return want, nil
}
