// SPDX-License-Identifier: MIT
// C++ producer: writes Frame messages (FlatBuffer header + test-pattern pixels in place) to a
// shmchan channel through the public C API. Prints "ready", then "done frames=N crc=... fps=...".
#include <zlib.h>

#include "peer_common.hpp"

int main(int argc, char **argv)
{
	peer::Opts o = peer::parse(argc, argv);
	peer::FrameWriter fw;
	if (!fw.placement(o.width, o.height, o.format)) {
		std::fprintf(stderr, "bad frame geometry\n");
		return 2;
	}
	shmchan_channel *ch = peer::open_channel(o, fw.message_size());
	std::printf("ready\n");
	std::fflush(stdout);
	shmchan_writer *w = nullptr;
	int rc = shmchan_writer_attach(ch, &w);
	if (rc)
		peer::die_rc(rc, "cannot attach a writer");
	long long frames = o.frames < 0 ? 100 : o.frames;
	auto base = peer::pattern_base(fw.pixel_bytes());
	uLong crc = crc32(0L, Z_NULL, 0);
	double start = peer::now_s();
	for (long long seq = 0; seq < frames; seq++) {
		void *data = nullptr;
		uint32_t slot = 0;
		do
			rc = shmchan_reserve(w, fw.message_size(), o.timeout_ns, &data, &slot);
		while (rc == -EINTR);
		if (rc)
			peer::die_rc(rc, "cannot reserve");
		uint64_t ts = uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
					       std::chrono::system_clock::now().time_since_epoch()).count());
		uint8_t *px = fw.write(static_cast<uint8_t *>(data), uint64_t(seq), ts);
		peer::pattern_fill(px, base, uint64_t(seq));
		if (o.verify == "crc")
			crc = crc32(crc, px, uInt(fw.pixel_bytes()));
		rc = shmchan_commit(w, fw.message_size());
		if (rc)
			peer::die_rc(rc, "cannot commit");
	}
	double secs = peer::now_s() - start;
	shmchan_writer_close(w);
	std::printf("done frames=%lld crc=%08lx seconds=%.6f fps=%.1f\n", frames, crc, secs, double(frames) / (secs > 0 ? secs : 1e-9));
	std::fflush(stdout);
	if (o.hold)
		peer::wait_for_exit();
	if (o.create)
		shmchan_channel_unlink(ch);
	shmchan_close(ch);
	return 0;
}
