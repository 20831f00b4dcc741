// SPDX-License-Identifier: MIT
// Media messages for the C++ peers: a Frame's describing line (with the crc32 of its pixel rows and
// every release-2 field), and Packet and Audio messages verified and decoded in place. The lines
// are identical to the Rust peer's (peers/rust/src/frame.rs, src/bin/inspect.rs).
#pragma once

#include <zlib.h>

#include <string>

#include "peer_common.hpp"
#include "generated/audio_generated.h"
#include "generated/packet_generated.h"

namespace peer {

inline std::string ratio_text(const fb::Rational *r)
{
	if (!r || r->den() <= 0)
		return "-";
	return std::to_string(r->num()) + "/" + std::to_string(r->den());
}

inline std::string opt_time(int64_t v)
{
	return v == INT64_MIN ? std::string("-") : std::to_string(v);
}

/* crc32 of a decoded frame's pixel rows, plane by plane, without row padding. */
inline uint32_t rows_crc(const uint8_t *msg, const fb::Frame *f)
{
	uLong crc = crc32(0L, Z_NULL, 0);
	std::vector<PlaneGeom> want;
	if (!plane_layout(f->pixel_format(), f->width(), f->height(), want))
		return 0;
	for (flatbuffers::uoffset_t i = 0; i < f->planes()->size(); i++) {
		const fb::Plane *p = f->planes()->Get(i);
		for (uint32_t r = 0; r < want[i].rows; r++)
			crc = crc32(crc, msg + p->offset() + uint64_t(r) * p->stride(), want[i].stride);
	}
	return uint32_t(crc);
}

/* The --verify frames / shmchan-inspect line of a frame that decode_frame accepted. */
inline std::string frame_line(const uint8_t *msg, const fb::Frame *f)
{
	char buf[640];
	std::snprintf(buf, sizeof buf,
		      "frame seq=%" PRIu64 " ts=%" PRIu64 " size=%ux%u format=%u pts=%s time_base=%s duration=%" PRId64
		      " key=%u matrix=%u range=%u primaries=%u transfer=%u sar=%s rotation=%u field_order=%u crc=%08x",
		      f->seq(), f->timestamp_ns(), f->width(), f->height(), unsigned(f->pixel_format()),
		      opt_time(f->pts()).c_str(), ratio_text(f->time_base()).c_str(), f->duration(), unsigned(f->keyframe()),
		      unsigned(f->color_matrix()), unsigned(f->color_range()), unsigned(f->color_primaries()),
		      unsigned(f->color_transfer()), ratio_text(f->sample_aspect_ratio()).c_str(), unsigned(f->rotation()),
		      unsigned(f->field_order()), rows_crc(msg, f));
	return buf;
}

inline bool payload_fits(uint64_t off, uint64_t size, uint64_t len)
{
	return off <= len && size <= len - off;
}

/* A Packet message verified in place; null (with why) if malformed. */
inline const fb::Packet *decode_packet(const uint8_t *msg, uint64_t len, std::string &why)
{
	flatbuffers::Verifier v(msg, len);
	if (len < 8 || !fb::PacketBufferHasIdentifier(msg) || !fb::VerifyPacketBuffer(v)) {
		why = "malformed Packet message";
		return nullptr;
	}
	const fb::Packet *p = fb::GetPacket(msg);
	if (!payload_fits(p->data_offset(), p->data_size(), len)) {
		why = "Packet data outside the message";
		return nullptr;
	}
	return p;
}

inline uint64_t audio_sample_bytes(fb::SampleFormat f)
{
	switch (f) {
	case fb::SampleFormat::U8: return 1;
	case fb::SampleFormat::S16: return 2;
	case fb::SampleFormat::S32:
	case fb::SampleFormat::F32: return 4;
	case fb::SampleFormat::F64:
	case fb::SampleFormat::S64: return 8;
	default: return 0;
	}
}

/* An Audio message verified in place; null (with why) if malformed. */
inline const fb::Audio *decode_audio(const uint8_t *msg, uint64_t len, std::string &why)
{
	flatbuffers::Verifier v(msg, len);
	if (len < 8 || !fb::AudioBufferHasIdentifier(msg) || !fb::VerifyAudioBuffer(v)) {
		why = "malformed Audio message";
		return nullptr;
	}
	const fb::Audio *a = fb::GetAudio(msg);
	uint64_t bps = audio_sample_bytes(a->sample_format()), ch = a->channels(), row = a->samples() * bps;
	uint64_t need = a->planar() ? a->plane_stride() * (ch ? ch - 1 : 0) + row : row * ch;
	if (!bps || ch == 0 || ch > 64 || (a->planar() && a->plane_stride() < row) ||
	    !payload_fits(a->data_offset(), a->data_size(), len) || need > a->data_size()) {
		why = "Audio samples do not fit the message";
		return nullptr;
	}
	return a;
}

} // namespace peer
