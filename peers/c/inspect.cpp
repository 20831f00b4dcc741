// SPDX-License-Identifier: MIT
// shmchan-inspect FILE...: decodes message files (Frame, Packet or Audio, by file identifier) and
// prints one line per message with every field, the same lines as the Rust peer's shmchan-inspect.
// A Frame is also read with release 1's generated code (frame_v1), as an old reader would: a line
// "v1 ..." with the fields that release knew. Exits 1 on a message that does not decode.
#include <fstream>
#include <iterator>

#include "media.hpp"
#include "generated/frame_v1_generated.h"

static std::string hex(const flatbuffers::Vector<uint8_t> *v)
{
	if (!v || v->size() == 0)
		return "-";
	std::string s;
	char b[3];
	for (uint8_t x : *v) {
		std::snprintf(b, sizeof b, "%02x", x);
		s += b;
	}
	return s;
}

static bool inspect(const std::vector<uint8_t> &data)
{
	const uint8_t *msg = data.data();
	uint64_t len = data.size();
	std::string why, ident = len >= 8 ? std::string(reinterpret_cast<const char *>(msg) + 4, 4) : "";
	if (ident == "SHFR") {
		const uint8_t *px;
		uint64_t npx;
		const shmchan::fb::Frame *f = peer::decode_frame(msg, len, &px, &npx, why);
		if (!f) {
			std::printf("error %s\n", why.c_str());
			return false;
		}
		std::printf("%s\n", peer::frame_line(msg, f).c_str());
		flatbuffers::Verifier v(msg, len);
		if (!frame_v1::VerifyFrameBuffer(v)) {
			std::printf("error release-1 reader: does not verify\n");
			return false;
		}
		const frame_v1::Frame *old = frame_v1::GetFrame(msg);
		std::string planes;
		for (flatbuffers::uoffset_t i = 0; old->planes() && i < old->planes()->size(); i++) {
			const frame_v1::Plane *p = old->planes()->Get(i);
			planes += (i ? "," : "") + std::to_string(p->offset()) + ":" + std::to_string(p->stride()) + ":" +
				  std::to_string(p->rows());
		}
		std::printf("v1 seq=%" PRIu64 " ts=%" PRIu64 " size=%ux%u format=%u planes=%s data=%" PRIu64 "+%" PRIu64 "\n",
			    old->seq(), old->timestamp_ns(), old->width(), old->height(), unsigned(old->pixel_format()),
			    planes.c_str(), old->data_offset(), old->data_size());
	} else if (ident == "SHPK") {
		const shmchan::fb::Packet *p = peer::decode_packet(msg, len, why);
		if (!p) {
			std::printf("error %s\n", why.c_str());
			return false;
		}
		const uint8_t *d = msg + p->data_offset();
		std::printf("packet seq=%" PRIu64 " ts=%" PRIu64 " codec=%s pts=%s dts=%s duration=%" PRId64
			    " time_base=%s key=%u extradata=%s size=%ux%u bytes=%" PRIu64 " crc=%08lx\n",
			    p->seq(), p->timestamp_ns(), p->codec() ? p->codec()->c_str() : "", peer::opt_time(p->pts()).c_str(),
			    peer::opt_time(p->dts()).c_str(), p->duration(), peer::ratio_text(p->time_base()).c_str(),
			    unsigned(p->keyframe()), hex(p->extradata()).c_str(), p->width(), p->height(), p->data_size(),
			    crc32(crc32(0L, Z_NULL, 0), d, uInt(p->data_size())));
	} else if (ident == "SHAU") {
		const shmchan::fb::Audio *a = peer::decode_audio(msg, len, why);
		if (!a) {
			std::printf("error %s\n", why.c_str());
			return false;
		}
		uint64_t bps = peer::audio_sample_bytes(a->sample_format()), row = a->samples() * bps;
		const uint8_t *d = msg + a->data_offset();
		uLong crc = crc32(0L, Z_NULL, 0);
		if (a->planar())
			for (unsigned c = 0; c < a->channels(); c++)
				crc = crc32(crc, d + c * a->plane_stride(), uInt(row));
		else
			crc = crc32(crc, d, uInt(row * a->channels()));
		std::string layout = a->channel_layout() && a->channel_layout()->size() ? a->channel_layout()->str() : "-";
		std::printf("audio seq=%" PRIu64 " ts=%" PRIu64 " rate=%u format=%u planar=%u channels=%u layout=%s "
			    "samples=%u pts=%s time_base=%s bytes_per_sample=%" PRIu64 " crc=%08lx\n",
			    a->seq(), a->timestamp_ns(), a->sample_rate(), unsigned(a->sample_format()), unsigned(a->planar()),
			    unsigned(a->channels()), layout.c_str(), a->samples(), peer::opt_time(a->pts()).c_str(),
			    peer::ratio_text(a->time_base()).c_str(), bps, crc);
	} else {
		std::printf("error unknown file identifier\n");
		return false;
	}
	return true;
}

int main(int argc, char **argv)
{
	int status = 0;
	for (int i = 1; i < argc; i++) {
		std::ifstream f(argv[i], std::ios::binary);
		if (!f) {
			std::fprintf(stderr, "error %s: cannot read\n", argv[i]);
			return 2;
		}
		std::vector<uint8_t> data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
		if (!inspect(data))
			status = 1;
	}
	return status;
}
