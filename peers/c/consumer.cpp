// SPDX-License-Identifier: MIT
// C++ consumer: receives Frame messages through the public C API, verifies each FlatBuffer header
// (flatbuffers::Verifier) and its pixels in place (crc32, or one byte per 4 KiB page; --verify frames
// prints a line per frame with the crc32 of its pixel rows and its media fields).
// Prints "ready", then "done frames=N crc=... fps=... errors=E".
#include <zlib.h>

#include "media.hpp"

int main(int argc, char **argv)
{
	peer::Opts o = peer::parse(argc, argv);
	peer::FrameWriter fw;
	if (!fw.placement(o.width, o.height, o.format)) {
		std::fprintf(stderr, "bad frame geometry\n");
		return 2;
	}
	shmchan_channel *ch = peer::open_channel(o, fw.message_size());
	shmchan_reader *r = nullptr;
	int rc = shmchan_reader_attach(ch, &r);
	if (rc)
		peer::die_rc(rc, "cannot attach a reader");
	std::printf("ready\n");
	std::fflush(stdout);
	uLong crc = crc32(0L, Z_NULL, 0);
	std::vector<uint8_t> base;
	long long n = 0, errors = 0;
	double start = 0, last = 0;
	while (o.frames < 0 || n < o.frames) {
		struct shmchan_msg m;
		do
			rc = shmchan_peek(r, o.timeout_ns, &m);
		while (rc == -EINTR);
		if (rc == -SHMCHAN_EENDED)
			break;
		if (rc)
			peer::die_rc(rc, "cannot receive");
		if (n == 0)
			start = peer::now_s();
		const uint8_t *px = nullptr;
		uint64_t npx = 0;
		std::string why;
		const shmchan::fb::Frame *f = peer::decode_frame(static_cast<const uint8_t *>(m.data), m.len, &px, &npx, why);
		if (!f) {
			std::printf("error decode: %s\n", why.c_str());
			return 1;
		}
		if (f->seq() != uint64_t(n)) {
			errors++;
			std::fprintf(stderr, "frame %lld: seq %" PRIu64 "\n", n, f->seq());
		}
		if (o.verify == "crc") {
			crc = crc32(crc, px, uInt(npx));
		} else if (o.verify == "frames") {
			crc = crc32(crc, px, uInt(npx));
			std::printf("%s\n", peer::frame_line(static_cast<const uint8_t *>(m.data), f).c_str());
		} else if (o.verify == "stamp") {
			if (base.size() != npx)
				base = peer::pattern_base(npx);
			uint8_t k = uint8_t(f->seq() * 13);
			for (uint64_t i = 0; i < npx; i += 4096)
				if (px[i] != uint8_t(base[i] + k)) {
					errors++;
					break;
				}
		}
		shmchan_release(r, m.pos);
		n++;
		last = peer::now_s();
	}
	double secs = n ? last - start : 0;
	std::printf("done frames=%lld crc=%08lx seconds=%.6f fps=%.1f errors=%lld\n", n, crc, secs,
		    n > 1 ? double(n - 1) / (secs > 0 ? secs : 1e-9) : 0.0, errors);
	std::fflush(stdout);
	shmchan_reader_close(r);
	if (o.hold)
		peer::wait_for_exit();
	if (o.create)
		shmchan_channel_unlink(ch);
	shmchan_close(ch);
	return errors ? 1 : 0;
}
