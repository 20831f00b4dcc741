// SPDX-License-Identifier: MIT
// Shared by the C++ producer and consumer: options, ChannelInfo, schema compatibility, Frame
// header placement, the test pattern. Uses only the public C API (csrc/include/shmchan.h) and the
// flatc --cpp generated headers (peers/c/generated/) with the header-only FlatBuffers runtime.
#pragma once

#include <array>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "shmchan.h"
#include "generated/channel_info_generated.h"
#include "generated/frame_generated.h"
#include "generated/shmchan_signatures.h"

namespace peer {

namespace fb = shmchan::fb;

struct Schema {
	std::string name, ident, signature;
	uint64_t fingerprint = 0;
};

inline uint64_t fnv1a(const std::string &s)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (unsigned char c : s)
		h = (h ^ c) * 0x100000001b3ull;
	return h;
}

inline bool builtin_schema(const std::string &which, Schema &out)
{
	using namespace shmchan_sig;
	if (which == "frame")
		out = {FRAME_NAME, FRAME_IDENT, FRAME_SIGNATURE, FRAME_FINGERPRINT};
	else if (which == "tensor")
		out = {TENSOR_NAME, TENSOR_IDENT, TENSOR_SIGNATURE, TENSOR_FINGERPRINT};
	else if (which == "frame_next")
		out = {FRAME_NEXT_NAME, FRAME_NEXT_IDENT, FRAME_NEXT_SIGNATURE, FRAME_NEXT_FINGERPRINT};
	else if (which == "frame_incompatible")
		out = {FRAME_INCOMPATIBLE_NAME, FRAME_INCOMPATIBLE_IDENT, FRAME_INCOMPATIBLE_SIGNATURE,
		       FRAME_INCOMPATIBLE_FINGERPRINT};
	else
		return false;
	return true;
}

/* The signature text parsed: enums (kind, values) and objects (kind, fields by id). */
struct Sig {
	std::map<std::string, std::pair<std::string, std::map<long long, std::string>>> enums;
	std::map<std::string, std::pair<std::string, std::map<long, std::pair<std::string, std::string>>>> objects;
};

inline Sig parse_signature(const std::string &text)
{
	Sig s;
	std::istringstream in(text);
	std::string line, cur_enum, cur_obj;
	while (std::getline(in, line)) {
		std::istringstream w(line);
		std::string k, a, b, c;
		w >> k >> a >> b >> c;
		if (k == "enum" || k == "union") {
			s.enums[a] = {k + " " + b, {}};
			cur_enum = a;
			cur_obj.clear();
		} else if (k == "value" && !cur_enum.empty()) {
			s.enums[cur_enum].second[std::atoll(a.c_str())] = b;
		} else if (k == "table" || k == "struct") {
			s.objects[a] = {b.empty() ? k : k + " " + b, {}};
			cur_obj = a;
			cur_enum.clear();
		} else if (k == "field" && !cur_obj.empty()) {
			s.objects[cur_obj].second[std::atol(a.c_str())] = {b, c};
		}
	}
	return s;
}

/* "" when compatible (FlatBuffers evolution rules), else a sentence naming the first difference. */
inline std::string check_compatible(const Schema &ch, const Schema &want)
{
	if (ch.name != want.name || ch.ident != want.ident)
		return "the channel carries " + ch.name + " messages (identifier '" + ch.ident + "'); you expect " +
		       want.name + " ('" + want.ident + "')";
	if (ch.fingerprint == want.fingerprint && ch.signature == want.signature)
		return "";
	Sig a = parse_signature(ch.signature), b = parse_signature(want.signature);
	for (auto &[name, ea] : a.enums) {
		auto it = b.enums.find(name);
		if (it == b.enums.end())
			continue;
		if (ea.first != it->second.first)
			return name + " is '" + ea.first + "' in the channel's schema but '" + it->second.first + "' in the schema you expect";
		for (auto &[v, n] : ea.second) {
			auto jt = it->second.second.find(v);
			if (jt != it->second.second.end() && jt->second != n)
				return "value " + std::to_string(v) + " of " + name + " is '" + n +
				       "' in the channel's schema but '" + jt->second + "' in the schema you expect";
		}
	}
	for (auto &[name, oa] : a.objects) {
		auto it = b.objects.find(name);
		if (it == b.objects.end())
			continue;
		const auto &ob = it->second;
		if (oa.first != ob.first || (oa.first.rfind("struct", 0) == 0 && oa.second != ob.second))
			return name + " is '" + oa.first + "' in the channel's schema but '" + ob.first +
			       "' in the schema you expect, or a struct changed (structs cannot change)";
		for (auto &[id, f] : oa.second) {
			auto jt = ob.second.find(id);
			if (jt != ob.second.end() && jt->second != f)
				return "field " + std::to_string(id) + " of " + oa.first + " " + name + " is '" + f.first + ": " +
				       f.second + "' in the channel's schema but '" + jt->second.first + ": " + jt->second.second +
				       "' in the schema you expect";
		}
	}
	return "";
}

/* The ChannelInfo FlatBuffer, built in the same order as Python and Rust (identical bytes): payload,
   shape, metadata sorted by key, numpy_descr (state boards), then the table. */
inline std::vector<uint8_t> build_channel_info(uint64_t slot_size, uint32_t capacity, uint32_t slot_align,
					       const Schema *payload, fb::DType dtype, const std::vector<int64_t> *shape,
					       std::vector<std::pair<std::string, std::string>> meta,
					       fb::ChannelKind kind = fb::ChannelKind::Spsc,
					       const char *numpy_descr = nullptr)
{
	flatbuffers::FlatBufferBuilder b(1024);
	flatbuffers::Offset<fb::PayloadSchema> p = 0;
	if (payload) {
		auto name = b.CreateString(payload->name);
		auto ident = b.CreateString(payload->ident);
		auto sig = b.CreateString(payload->signature);
		p = fb::CreatePayloadSchema(b, name, ident, fnv1a(payload->signature), sig, 0);
	}
	flatbuffers::Offset<flatbuffers::Vector<int64_t>> shp = 0;
	if (shape)
		shp = b.CreateVector(*shape);
	flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<fb::KeyValue>>> md = 0;
	if (!meta.empty()) {
		std::sort(meta.begin(), meta.end());
		std::vector<flatbuffers::Offset<fb::KeyValue>> kvs;
		for (auto &[k, v] : meta) {
			auto ko = b.CreateString(k);
			auto vo = b.CreateString(v);
			kvs.push_back(fb::CreateKeyValue(b, ko, vo));
		}
		md = b.CreateVector(kvs);
	}
	flatbuffers::Offset<flatbuffers::String> descr = 0;
	if (numpy_descr)
		descr = b.CreateString(numpy_descr);
	auto root = fb::CreateChannelInfo(b, kind, slot_size, capacity, slot_align, p, dtype, shp, md, descr);
	b.Finish(root, fb::ChannelInfoIdentifier());
	return std::vector<uint8_t>(b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize());
}

/* Reads, verifies and returns the channel's payload schema; false (with why) if there is none. */
inline bool channel_schema(shmchan_channel *ch, Schema &out, std::string &why)
{
	struct shmchan_info info;
	shmchan_info(ch, &info);
	std::vector<uint8_t> d(info.descriptor_size);
	uint64_t len = 0;
	if (d.empty() || shmchan_read_descriptor(ch, d.data(), d.size(), &len) != 0) {
		why = "the channel carries raw bytes (no ChannelInfo descriptor)";
		return false;
	}
	flatbuffers::Verifier v(d.data(), len);
	if (!fb::ChannelInfoBufferHasIdentifier(d.data()) || !fb::VerifyChannelInfoBuffer(v)) {
		why = "malformed ChannelInfo descriptor";
		return false;
	}
	const fb::ChannelInfo *ci = fb::GetChannelInfo(d.data());
	if (ci->slot_size() != info.slot_size || ci->capacity() != info.capacity || ci->slot_align() != info.slot_align) {
		why = "the ChannelInfo geometry disagrees with the header";
		return false;
	}
	const fb::PayloadSchema *p = ci->payload();
	if (!p) {
		why = "the channel carries raw bytes (no payload schema)";
		return false;
	}
	auto str = [](const flatbuffers::String *s) { return s ? s->str() : std::string(); };
	out = {str(p->name()), str(p->file_identifier()), str(p->signature()), p->fingerprint()};
	return true;
}

/* ---- frames ---- */

constexpr size_t DATA_ALIGN = 64;

struct PlaneGeom {
	uint64_t offset;
	uint32_t stride, rows;
};

struct FormatPlanes {
	uint32_t sample_bytes;
	std::vector<std::array<uint32_t, 3>> planes; /* horizontal, vertical subsampling; samples per position */
	bool even_width;
};

/* Per format: sample bytes and the planes (docs/protocol.md, "Frame messages"). */
inline bool format_planes(fb::PixelFormat fmt, FormatPlanes &out)
{
	using P = fb::PixelFormat;
	switch (fmt) {
	case P::GRAY8: out = {1, {{1, 1, 1}}, false}; return true;
	case P::RGB24:
	case P::BGR24: out = {1, {{1, 1, 3}}, false}; return true;
	case P::RGBA32:
	case P::BGRA32: out = {1, {{1, 1, 4}}, false}; return true;
	case P::NV12: out = {1, {{1, 1, 1}, {2, 2, 2}}, false}; return true;
	case P::I420: out = {1, {{1, 1, 1}, {2, 2, 1}, {2, 2, 1}}, false}; return true;
	case P::YUYV422:
	case P::UYVY422: out = {1, {{1, 1, 2}}, true}; return true;
	case P::P010: out = {2, {{1, 1, 1}, {2, 2, 2}}, false}; return true;
	case P::YUV422P: out = {1, {{1, 1, 1}, {2, 1, 1}, {2, 1, 1}}, false}; return true;
	case P::YUV444P: out = {1, {{1, 1, 1}, {1, 1, 1}, {1, 1, 1}}, false}; return true;
	case P::GRAY16: out = {2, {{1, 1, 1}}, false}; return true;
	case P::RGB48: out = {2, {{1, 1, 3}}, false}; return true;
	case P::YUV420P10: out = {2, {{1, 1, 1}, {2, 2, 1}, {2, 2, 1}}, false}; return true;
	default: return false;
	}
}

/* (offset from data_offset, row bytes, rows) of each plane, packed back to back. */
inline bool plane_layout(fb::PixelFormat fmt, uint32_t w, uint32_t h, std::vector<PlaneGeom> &out)
{
	FormatPlanes f;
	if (w == 0 || h == 0 || w > 65536 || h > 65536 || !format_planes(fmt, f) || (f.even_width && w % 2))
		return false;
	out.clear();
	uint64_t off = 0;
	for (auto &p : f.planes) {
		uint32_t row = f.sample_bytes * p[2] * ((w + p[0] - 1) / p[0]), rows = (h + p[1] - 1) / p[1];
		out.push_back({off, row, rows});
		off += uint64_t(row) * rows;
	}
	return true;
}

inline uint64_t data_size(const std::vector<PlaneGeom> &l)
{
	return l.back().offset + uint64_t(l.back().stride) * l.back().rows;
}

/* Builds Frame headers; the pixels go at data_offset, a multiple of 64 after the FlatBuffer. */
class FrameWriter {
      public:
	bool placement(uint32_t w, uint32_t h, fb::PixelFormat fmt)
	{
		if (!plane_layout(fmt, w, h, layout_))
			return false;
		width_ = w, height_ = h, fmt_ = fmt;
		size_t off = 0;
		for (;;) {
			build(~0ull, ~0ull, off ? off : DATA_ALIGN);
			size_t need = (b_.GetSize() + DATA_ALIGN - 1) / DATA_ALIGN * DATA_ALIGN;
			if (need <= off)
				break;
			off = need;
		}
		data_offset_ = off;
		data_size_ = data_size(layout_);
		return true;
	}
	size_t message_size() const { return data_offset_ + data_size_; }
	size_t data_offset() const { return data_offset_; }
	size_t pixel_bytes() const { return data_size_; }
	/* Writes the header into msg (message_size() bytes); returns the pixel area. */
	uint8_t *write(uint8_t *msg, uint64_t seq, uint64_t ts)
	{
		build(seq, ts, data_offset_);
		std::memcpy(msg, b_.GetBufferPointer(), b_.GetSize());
		std::memset(msg + b_.GetSize(), 0, data_offset_ - b_.GetSize());
		return msg + data_offset_;
	}

      private:
	void build(uint64_t seq, uint64_t ts, size_t data_offset)
	{
		b_.Clear();
		std::vector<fb::Plane> planes;
		for (auto &p : layout_)
			planes.emplace_back(p.offset + data_offset, p.stride, p.rows);
		auto pv = b_.CreateVectorOfStructs(planes);
		auto root = fb::CreateFrame(b_, seq, ts, width_, height_, fmt_, pv, data_offset, data_size(layout_));
		b_.Finish(root, fb::FrameIdentifier());
	}
	flatbuffers::FlatBufferBuilder b_{512};
	std::vector<PlaneGeom> layout_;
	uint32_t width_ = 0, height_ = 0;
	fb::PixelFormat fmt_ = fb::PixelFormat::Unknown;
	size_t data_offset_ = 0, data_size_ = 0;
};

/* Verifies a Frame message in place; null (with why) if malformed. */
inline const fb::Frame *decode_frame(const uint8_t *msg, uint64_t len, const uint8_t **pixels, uint64_t *npixels,
				     std::string &why)
{
	flatbuffers::Verifier v(msg, len);
	if (len < 8 || !fb::FrameBufferHasIdentifier(msg) || !fb::VerifyFrameBuffer(v)) {
		why = "malformed Frame message";
		return nullptr;
	}
	const fb::Frame *f = fb::GetFrame(msg);
	uint64_t off = f->data_offset(), size = f->data_size();
	std::vector<PlaneGeom> want;
	if (off > len || size > len - off || !plane_layout(f->pixel_format(), f->width(), f->height(), want) ||
	    !f->planes() || f->planes()->size() != want.size()) {
		why = "Frame pixels or planes do not fit the message";
		return nullptr;
	}
	FormatPlanes fp;
	format_planes(f->pixel_format(), fp);
	for (flatbuffers::uoffset_t i = 0; i < f->planes()->size(); i++) {
		const fb::Plane *p = f->planes()->Get(i);
		if (p->rows() < want[i].rows || p->stride() < want[i].stride || p->offset() < off ||
		    p->offset() % fp.sample_bytes || p->stride() % fp.sample_bytes ||
		    p->offset() + uint64_t(p->stride()) * (p->rows() ? p->rows() - 1 : 0) + want[i].stride > off + size) {
			why = "Frame plane does not fit the pixel area";
			return nullptr;
		}
	}
	*pixels = msg + off;
	*npixels = size;
	return f;
}

/* ---- the test pattern: byte i of frame seq is 7*i + (i >> 10) + 13*seq (mod 256) ---- */

inline std::vector<uint8_t> pattern_base(size_t n)
{
	std::vector<uint8_t> b(n);
	for (size_t i = 0; i < n; i++)
		b[i] = uint8_t(i * 7 + (i >> 10));
	return b;
}

inline void pattern_fill(uint8_t *dst, const std::vector<uint8_t> &base, uint64_t seq)
{
	uint8_t k = uint8_t(seq * 13);
	for (size_t i = 0; i < base.size(); i++)
		dst[i] = uint8_t(base[i] + k);
}

/* ---- options (the same as the Rust peers') ---- */

struct Opts {
	std::string name;
	bool create = false, hold = false;
	long long frames = -1;
	uint32_t width = 1920, height = 1080, capacity = 8;
	fb::PixelFormat format = fb::PixelFormat::RGB24;
	std::string schema = "frame", verify = "crc";
	uint64_t slot_size = 0;
	bool have_shape = false;
	std::vector<int64_t> shape;
	fb::DType dtype = fb::DType::Unknown;
	std::vector<std::pair<std::string, std::string>> meta;
	int64_t timeout_ns = -1;
};

[[noreturn]] inline void usage(const char *prog)
{
	std::fprintf(stderr,
		     "usage: %s NAME [--create] [--frames N] [--width W] [--height H] [--format RGB24|...] [--capacity C]\n"
		     "    [--schema frame|frame_next|frame_incompatible|none] [--slot-size BYTES] [--shape A,B,C] [--dtype uint8]\n"
		     "    [--meta KEY=VALUE]... [--verify crc|stamp|none] [--hold] [--timeout SECONDS]\n",
		     prog);
	std::exit(2);
}

inline Opts parse(int argc, char **argv)
{
	Opts o;
	if (argc < 2)
		usage(argv[0]);
	o.name = argv[1];
	for (int i = 2; i < argc; i++) {
		std::string k = argv[i];
		auto val = [&]() -> std::string {
			if (i + 1 >= argc)
				usage(argv[0]);
			return argv[++i];
		};
		if (k == "--create")
			o.create = true;
		else if (k == "--hold")
			o.hold = true;
		else if (k == "--frames")
			o.frames = std::atoll(val().c_str());
		else if (k == "--width")
			o.width = uint32_t(std::atol(val().c_str()));
		else if (k == "--height")
			o.height = uint32_t(std::atol(val().c_str()));
		else if (k == "--capacity")
			o.capacity = uint32_t(std::atol(val().c_str()));
		else if (k == "--slot-size")
			o.slot_size = std::strtoull(val().c_str(), nullptr, 10);
		else if (k == "--timeout")
			o.timeout_ns = int64_t(std::atof(val().c_str()) * 1e9);
		else if (k == "--schema")
			o.schema = val();
		else if (k == "--verify")
			o.verify = val();
		else if (k == "--format") {
			std::string f = val();
			bool found = false;
			for (auto v : fb::EnumValuesPixelFormat())
				if (f == fb::EnumNamePixelFormat(v))
					o.format = v, found = true;
			if (!found)
				usage(argv[0]);
		} else if (k == "--dtype") {
			std::string d = val();
			if (d == "uint8")
				o.dtype = fb::DType::UInt8;
			else if (d == "float32")
				o.dtype = fb::DType::Float32;
			else
				usage(argv[0]);
		} else if (k == "--shape") {
			std::stringstream ss(val());
			std::string part;
			o.have_shape = true;
			while (std::getline(ss, part, ','))
				o.shape.push_back(std::atoll(part.c_str()));
		} else if (k == "--meta") {
			std::string kv = val();
			size_t eq = kv.find('=');
			if (eq == std::string::npos)
				usage(argv[0]);
			o.meta.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
		} else
			usage(argv[0]);
	}
	return o;
}

/* Prints "error <tag>: ..." and exits: 3 incompatible, 4 peer dead, 5 timeout, 1 otherwise. */
[[noreturn]] inline void die_rc(int rc, const std::string &what)
{
	const char *tag = "error";
	int code = 1;
	if (rc == -SHMCHAN_EPEERDEAD)
		tag = "peer-dead", code = 4;
	else if (rc == -ETIMEDOUT || rc == -EAGAIN)
		tag = "timeout", code = 5;
	else if (rc == -SHMCHAN_EBADMAGIC || rc == -SHMCHAN_EVERSION || rc == -SHMCHAN_ENOTREG)
		tag = "incompatible", code = 3;
	std::printf("error %s: %s: %s\n", tag, what.c_str(), shmchan_strerror(rc));
	std::fflush(stdout);
	std::fprintf(stderr, "%s: %s: %s\n", tag, what.c_str(), shmchan_strerror(rc));
	std::exit(code);
}

[[noreturn]] inline void die_incompatible(const std::string &why)
{
	std::printf("error incompatible: %s\n", why.c_str());
	std::fflush(stdout);
	std::fprintf(stderr, "incompatible: %s\n", why.c_str());
	std::exit(3);
}

/* Creates (with a ChannelInfo) or opens (checking the schema) the channel. */
inline shmchan_channel *open_channel(const Opts &o, uint64_t message_size)
{
	Schema want;
	bool have = o.schema != "none";
	if (have && !builtin_schema(o.schema, want)) {
		std::fprintf(stderr, "unknown schema %s\n", o.schema.c_str());
		std::exit(2);
	}
	shmchan_channel *ch = nullptr;
	struct shmchan_diag diag;
	if (o.create) {
		struct shmchan_config cfg;
		std::memset(&cfg, 0, sizeof cfg);
		cfg.slot_size = o.slot_size ? o.slot_size : message_size;
		cfg.capacity = o.capacity;
		/* the alignment the core gives a slot of this size (the ChannelInfo must repeat the header's) */
		auto d = build_channel_info(cfg.slot_size, cfg.capacity, shmchan_default_slot_align(cfg.slot_size),
					    have ? &want : nullptr, o.dtype, o.have_shape ? &o.shape : nullptr, o.meta);
		cfg.descriptor = d.data();
		cfg.descriptor_size = uint32_t(d.size());
		/* a NAME with a '/' is the path of a file-backed channel */
		const bool file = o.name.find('/') != std::string::npos;
		int rc = file ? shmchan_create_file(o.name.c_str(), &cfg, &ch, &diag)
			      : shmchan_create(o.name.c_str(), &cfg, &ch, &diag);
		if (rc)
			die_rc(rc, std::string("cannot create channel: ") + diag.message);
	} else {
		/* unix:SOCKET is a sealed channel served on that socket; a NAME with a '/' a file */
		const bool sealed = o.name.rfind("unix:", 0) == 0;
		const bool file = !sealed && o.name.find('/') != std::string::npos;
		int rc = sealed ? shmchan_connect(o.name.c_str() + 5, 5000000000ll, 0, &ch, &diag)
			 : file ? shmchan_open_file(o.name.c_str(), 5000000000ll, &ch, &diag)
				: shmchan_open(o.name.c_str(), 5000000000ll, &ch, &diag);
		if (rc)
			die_rc(rc, std::string("cannot open channel: ") + diag.message);
		if (have) {
			Schema got;
			std::string why;
			if (!channel_schema(ch, got, why))
				die_incompatible("channel " + o.name + ": " + why + "; you expect " + want.name);
			why = check_compatible(got, want);
			if (!why.empty())
				die_incompatible("channel " + o.name + ": " + why);
		}
	}
	return ch;
}

inline void wait_for_exit()
{
	std::string line;
	while (std::getline(std::cin, line))
		if (line == "exit")
			return;
}

inline double now_s()
{
	return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace peer
