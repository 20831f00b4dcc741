// SPDX-License-Identifier: MIT
//go:build linux && amd64

package shmchan

import (
	"fmt"
	"hash/fnv"
	"sort"
	"strings"

	flatbuffers "github.com/google/flatbuffers/go"

	"github.com/shmchan/shmchan/peers/go/internal/fb"
)

// PayloadSchema identifies a channel's message schema (docs/protocol.md, "Payload schema identity").
type PayloadSchema struct {
	Name           string // fully qualified root table
	FileIdentifier string
	Fingerprint    uint64 // FNV-1a 64 of Signature
	Signature      string
}

// Fingerprint is FNV-1a 64 of a signature's bytes.
func Fingerprint(signature string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(signature))
	return h.Sum64()
}

// SchemaFromSignature builds a PayloadSchema from signature text (its root and ident lines).
func SchemaFromSignature(sig string) PayloadSchema {
	s := PayloadSchema{Signature: sig, Fingerprint: Fingerprint(sig)}
	for _, line := range strings.Split(sig, "\n") {
		if v, ok := strings.CutPrefix(line, "root "); ok {
			s.Name = v
		} else if v, ok := strings.CutPrefix(line, "ident "); ok && v != "-" {
			s.FileIdentifier = v
		}
	}
	return s
}

// BuiltinSchema returns the shipped schemas by name: frame, tensor, frame_next, frame_incompatible.
func BuiltinSchema(name string) (PayloadSchema, bool) {
	sig, ok := map[string]string{"frame": fb.FrameSignature, "tensor": fb.TensorSignature,
		"frame_next": fb.FrameNextSignature, "frame_incompatible": fb.FrameIncompatibleSignature}[name]
	if !ok {
		return PayloadSchema{}, false
	}
	return SchemaFromSignature(sig), true
}

// ChannelInfo is the decoded descriptor (R47-R49).
type ChannelInfo struct {
	Kind       Kind
	SlotSize   uint64
	Capacity   uint32
	SlotAlign  uint32
	Payload    *PayloadSchema
	DType      uint8
	Shape      []int64
	Metadata   map[string]string
	NumpyDescr string
}

// BuildChannelInfo builds a ChannelInfo FlatBuffer in the order every shmchan peer uses (R49), so
// that descriptors are byte-identical across languages.
func BuildChannelInfo(ci ChannelInfo) []byte {
	b := flatbuffers.NewBuilder(1024)
	var payload, shape, meta, descr flatbuffers.UOffsetT
	if p := ci.Payload; p != nil {
		name, ident, sig := b.CreateString(p.Name), b.CreateString(p.FileIdentifier), b.CreateString(p.Signature)
		fb.PayloadSchemaStart(b)
		fb.PayloadSchemaAddFingerprint(b, p.Fingerprint)
		fb.PayloadSchemaAddSignature(b, sig)
		fb.PayloadSchemaAddFileIdentifier(b, ident)
		fb.PayloadSchemaAddName(b, name)
		payload = fb.PayloadSchemaEnd(b)
	}
	if ci.Shape != nil {
		fb.ChannelInfoStartShapeVector(b, len(ci.Shape))
		for i := len(ci.Shape) - 1; i >= 0; i-- {
			b.PrependInt64(ci.Shape[i])
		}
		shape = b.EndVector(len(ci.Shape))
	}
	if len(ci.Metadata) > 0 {
		keys := make([]string, 0, len(ci.Metadata))
		for k := range ci.Metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys) // byte order
		kvs := make([]flatbuffers.UOffsetT, len(keys))
		for i, k := range keys {
			ko, vo := b.CreateString(k), b.CreateString(ci.Metadata[k])
			fb.KeyValueStart(b)
			fb.KeyValueAddValue(b, vo)
			fb.KeyValueAddKey(b, ko)
			kvs[i] = fb.KeyValueEnd(b)
		}
		fb.ChannelInfoStartMetadataVector(b, len(kvs))
		for i := len(kvs) - 1; i >= 0; i-- {
			b.PrependUOffsetT(kvs[i])
		}
		meta = b.EndVector(len(kvs))
	}
	if ci.NumpyDescr != "" {
		descr = b.CreateString(ci.NumpyDescr)
	}
	fb.ChannelInfoStart(b)
	fb.ChannelInfoAddSlotSize(b, ci.SlotSize)
	if descr != 0 {
		fb.ChannelInfoAddNumpyDescr(b, descr)
	}
	if meta != 0 {
		fb.ChannelInfoAddMetadata(b, meta)
	}
	if shape != 0 {
		fb.ChannelInfoAddShape(b, shape)
	}
	if payload != 0 {
		fb.ChannelInfoAddPayload(b, payload)
	}
	fb.ChannelInfoAddSlotAlign(b, ci.SlotAlign)
	fb.ChannelInfoAddCapacity(b, ci.Capacity)
	fb.ChannelInfoAddDtype(b, fb.DType(ci.DType))
	kind := ci.Kind
	if kind == 0 {
		kind = KindSPSC
	}
	fb.ChannelInfoAddKind(b, fb.ChannelKind(kind))
	b.FinishWithFileIdentifier(fb.ChannelInfoEnd(b), []byte(fb.ChannelInfoIdentifier))
	return b.FinishedBytes()
}

// DecodeChannelInfo verifies (R47) and decodes a ChannelInfo descriptor.
func DecodeChannelInfo(data []byte) (ChannelInfo, error) {
	v := &verifier{b: data}
	pos, ok := v.root(fb.ChannelInfoIdentifier)
	if !ok {
		return ChannelInfo{}, v.err
	}
	for _, f := range []struct {
		id   int
		size uint64
	}{{0, 1}, {1, 8}, {2, 4}, {3, 4}, {5, 1}} {
		v.field(pos, f.id, f.size)
	}
	v.vector(pos, 6, 8, 32)
	if pp := v.sub(pos, 4); pp != 0 {
		v.str(pp, 0)
		v.str(pp, 1)
		v.str(pp, 3)
		v.field(pp, 2, 8)
		v.vector(pp, 4, 1, 1<<16)
	}
	for _, kv := range v.tables(pos, 7, 4096) {
		v.str(kv, 0)
		v.str(kv, 1)
	}
	v.str(pos, 8)
	if v.err != nil {
		return ChannelInfo{}, v.err
	}
	c := fb.GetRootAsChannelInfo(data, 0)
	ci := ChannelInfo{Kind: Kind(c.Kind()), SlotSize: c.SlotSize(), Capacity: c.Capacity(), SlotAlign: c.SlotAlign(),
		DType: uint8(c.Dtype()), NumpyDescr: string(c.NumpyDescr()), Metadata: map[string]string{}}
	if p := c.Payload(nil); p != nil {
		ci.Payload = &PayloadSchema{Name: string(p.Name()), FileIdentifier: string(p.FileIdentifier()),
			Fingerprint: p.Fingerprint(), Signature: string(p.Signature())}
	}
	if n := c.ShapeLength(); n > 0 {
		ci.Shape = make([]int64, n)
		for i := range ci.Shape {
			ci.Shape[i] = c.Shape(i)
		}
	}
	var kv fb.KeyValue
	for i := 0; i < c.MetadataLength(); i++ {
		if c.Metadata(&kv, i) {
			ci.Metadata[string(kv.Key())] = string(kv.Value())
		}
	}
	return ci, nil
}

// Info decodes the channel's descriptor as a ChannelInfo and checks it against the header (R48).
func (c *Channel) Info() (ChannelInfo, error) {
	if len(c.descriptor) == 0 {
		return ChannelInfo{}, errf(ErrIncompatible, "channel %s has no descriptor", c.name)
	}
	ci, err := DecodeChannelInfo(c.descriptor)
	if err != nil {
		return ci, fmt.Errorf("%w: channel %s: %w", ErrIncompatible, c.name, err)
	}
	if ci.Kind != c.g.Kind || ci.SlotSize != c.g.SlotSize || ci.Capacity != c.g.Capacity || ci.SlotAlign != c.g.SlotAlign {
		return ci, errf(ErrCorrupt, "channel %s: its ChannelInfo says a %s channel of %d slots of %d bytes aligned to %d, "+
			"its header a %s channel of %d of %d aligned to %d", c.name, ci.Kind, ci.Capacity, ci.SlotSize, ci.SlotAlign,
			c.g.Kind, c.g.Capacity, c.g.SlotSize, c.g.SlotAlign)
	}
	return ci, nil
}

// CheckSchema refuses (ErrIncompatible) a channel whose payload schema is not compatible with want.
func (c *Channel) CheckSchema(want PayloadSchema) error {
	ci, err := c.Info()
	if err != nil {
		return fmt.Errorf("%w (you expect %s)", err, want.Name)
	}
	if ci.Payload == nil {
		return errf(ErrIncompatible, "channel %s carries raw bytes; you expect %s", c.name, want.Name)
	}
	if why := Compatible(*ci.Payload, want); why != "" {
		return errf(ErrIncompatible, "channel %s: %s", c.name, why)
	}
	return nil
}

type sigItem struct {
	kind   string // enum, union, table, struct
	header string // the whole item line
	fields map[string]string
}

func parseSignature(sig string) map[string]*sigItem {
	items := map[string]*sigItem{}
	var cur *sigItem
	for _, line := range strings.Split(sig, "\n") {
		w := strings.Fields(line)
		if len(w) < 2 {
			continue
		}
		switch w[0] {
		case "enum", "union", "table", "struct":
			cur = &sigItem{kind: w[0], header: line, fields: map[string]string{}}
			items[w[1]] = cur
		case "value":
			if cur != nil && len(w) >= 3 {
				cur.fields[w[1]] = w[2]
			}
		case "field":
			if cur != nil && len(w) >= 4 {
				cur.fields[w[1]] = w[2] + ": " + w[3] // the deprecated mark may differ
			}
		}
	}
	return items
}

// Compatible says why the channel's schema ch is not compatible with the expected schema want,
// or "" when it is (the evolution rules of docs/protocol.md).
func Compatible(ch, want PayloadSchema) string {
	if ch.Name != want.Name || ch.FileIdentifier != want.FileIdentifier {
		return fmt.Sprintf("its schema is %s (identifier %q), you expect %s (identifier %q)", ch.Name,
			ch.FileIdentifier, want.Name, want.FileIdentifier)
	}
	if ch.Fingerprint == want.Fingerprint && ch.Signature == want.Signature {
		return ""
	}
	a, b := parseSignature(ch.Signature), parseSignature(want.Signature)
	names := make([]string, 0, len(a))
	for n := range a {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		x, y := a[n], b[n]
		if y == nil {
			continue
		}
		// same kind; enums and unions the same underlying type, structs the same size
		if x.kind != y.kind || (x.kind != "table" && x.header != y.header) {
			return fmt.Sprintf("%s %s is %q in the channel's schema but %q in the schema you expect", x.kind, n,
				x.header, y.header)
		}
		ids := make([]string, 0, len(x.fields))
		for id := range x.fields {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			fx, okx := x.fields[id]
			fy, oky := y.fields[id]
			if x.kind == "struct" && !oky {
				return fmt.Sprintf("struct %s differs", n)
			}
			if okx && oky && fx != fy {
				what := "field"
				if x.kind == "enum" || x.kind == "union" {
					what = "value"
				}
				return fmt.Sprintf("%s %s of %s %s is '%s' in the channel's schema but '%s' in the schema you expect",
					what, id, x.kind, n, fx, fy)
			}
		}
		if x.kind == "struct" && len(x.fields) != len(y.fields) {
			return fmt.Sprintf("struct %s differs", n)
		}
	}
	return ""
}
