// SPDX-License-Identifier: MIT
// C++ broadcast peer, through the public C API (the same command line as the Rust and Python ones
// in tests/test_interop_bcast.py).
//
//   shmchan-bcast writer NAME [--create] [--slot-size B] [--capacity C] [--max-readers R]
//       [--policy block|overwrite] [--messages N] [--wait-readers K] [--interval-us U] [--timeout S] [--hold]
//     Creates (ChannelInfo of kind Broadcast) or opens the channel, attaches the writer, prints
//     "ready", waits until K readers are attached (shmchan_reader_places), writes N messages of the
//     interop pattern and prints "done messages=N crc=XXXXXXXX seconds=S"; then closes the writer
//     (readers see the end) and, with --hold, waits for "exit" on stdin.
//   shmchan-bcast reader NAME [--start oldest|latest] [--policy block|overwrite] [--delay-us U] [--timeout S]
//     Attaches a reader (shmchan_reader_attach_ex), prints "ready position=P", and reads until the
//     writer closes, checking every message word by word and the accounting of lost messages. With
//     --delay-us it holds each message that long before checking it in place (then asks
//     shmchan_check whether it is intact), and every 4th message is copied out instead
//     (shmchan_recv, never torn). Prints "done messages=M lost=L stale=S torn=T errors=E first=F
//     last=P start=A end=B crc=XXXXXXXX seconds=S" (see peers/rust/src/bin/bcast.rs). Exits 1 when E > 0.
#include <zlib.h>

#include "bcast_common.hpp"

namespace {

const char *USAGE =
	"usage: shmchan-bcast writer NAME [--create] [--slot-size B] [--capacity C] [--max-readers R]\n"
	"    [--policy block|overwrite] [--messages N] [--wait-readers K] [--interval-us U] [--timeout S] [--hold]\n"
	"       shmchan-bcast reader NAME [--start oldest|latest] [--policy block|overwrite] [--delay-us U] [--timeout S]";

/* -1: not given */
int policy_of(const peer::Flags &f)
{
	std::string p = f.text("policy", "");
	if (p.empty())
		return -1;
	if (p == "block")
		return SHMCHAN_POLICY_BLOCK;
	if (p == "overwrite")
		return SHMCHAN_POLICY_OVERWRITE;
	f.usage();
}

shmchan_channel *open_broadcast(const std::string &name)
{
	shmchan_channel *ch = nullptr;
	struct shmchan_diag diag;
	int rc = shmchan_open(name.c_str(), 5000000000ll, &ch, &diag);
	if (rc)
		peer::die_rc(rc, std::string("cannot open channel: ") + diag.message);
	if (shmchan_kind(ch) != SHMCHAN_KIND_BROADCAST)
		peer::die_incompatible("channel " + name + " is not a broadcast channel (kind " +
				       std::to_string(shmchan_kind(ch)) + ")");
	return ch;
}

uint32_t attached_readers(shmchan_channel *ch, uint32_t max_readers)
{
	std::vector<struct shmchan_place_info> places(max_readers);
	int n = shmchan_reader_places(ch, places.data(), max_readers);
	uint32_t attached = 0;
	for (int i = 0; i < n && i < int(max_readers); i++)
		attached += places[size_t(i)].state == 1;
	return attached;
}

int writer(const peer::Flags &f)
{
	uint64_t slot_size = f.u64("slot-size", 512);
	uint32_t capacity = uint32_t(f.u64("capacity", 8));
	uint64_t n = f.u64("messages", 1000);
	uint32_t want_readers = uint32_t(f.u64("wait-readers", 0));
	uint64_t interval_us = f.u64("interval-us", 0);
	int64_t timeout_ns = int64_t(f.num("timeout", 60) * 1e9);
	shmchan_channel *ch = nullptr;
	if (f.has("create")) {
		int pol = policy_of(f);
		struct shmchan_config cfg;
		std::memset(&cfg, 0, sizeof cfg);
		cfg.slot_size = slot_size;
		cfg.capacity = capacity;
		cfg.kind = SHMCHAN_KIND_BROADCAST;
		cfg.max_readers = uint32_t(f.u64("max-readers", 8));
		cfg.policy = pol < 0 ? uint32_t(SHMCHAN_POLICY_BLOCK) : uint32_t(pol);
		cfg.slot_align = 4096; /* as the descriptor says (the Rust peer does the same) */
		auto d = peer::build_channel_info(slot_size, capacity, cfg.slot_align, nullptr, peer::fb::DType::Unknown, nullptr,
						  {{"pattern", "interop-words"}}, peer::fb::ChannelKind::Broadcast);
		cfg.descriptor = d.data();
		cfg.descriptor_size = uint32_t(d.size());
		struct shmchan_diag diag;
		int rc = shmchan_create(f.name.c_str(), &cfg, &ch, &diag);
		if (rc)
			peer::die_rc(rc, std::string("cannot create channel: ") + diag.message);
	} else {
		ch = open_broadcast(f.name);
	}
	struct shmchan_info info;
	shmchan_info(ch, &info);
	slot_size = info.slot_size;
	shmchan_writer *w = nullptr;
	int rc = shmchan_writer_attach(ch, &w);
	if (rc)
		peer::die_rc(rc, "cannot attach a writer");
	std::printf("ready\n");
	std::fflush(stdout);
	double t0 = peer::now_s();
	while (attached_readers(ch, info.max_readers) < want_readers) {
		if ((peer::now_s() - t0) * 1e9 > double(timeout_ns)) {
			std::printf("error timeout: %u of %u readers attached\n", attached_readers(ch, info.max_readers),
				    want_readers);
			std::fflush(stdout);
			return 5;
		}
		peer::sleep_us(1000);
	}
	uLong crc = crc32(0L, Z_NULL, 0);
	t0 = peer::now_s();
	for (uint64_t seq = 0; seq < n; seq++) {
		size_t len = peer::message::len(seq, slot_size);
		void *data = nullptr;
		do
			rc = shmchan_reserve(w, len, timeout_ns, &data, nullptr);
		while (rc == -EINTR);
		if (rc)
			peer::die_rc(rc, "cannot reserve");
		peer::message::fill(static_cast<uint8_t *>(data), len, seq);
		crc = crc32(crc, static_cast<const Bytef *>(data), uInt(len));
		rc = shmchan_commit(w, len);
		if (rc)
			peer::die_rc(rc, "cannot commit");
		peer::sleep_us(interval_us);
	}
	std::printf("done messages=%" PRIu64 " crc=%08lx seconds=%.6f\n", n, crc, peer::now_s() - t0);
	std::fflush(stdout);
	shmchan_writer_close(w); /* readers see the end of the stream */
	if (f.has("hold"))
		peer::wait_for_exit();
	if (f.has("create"))
		shmchan_channel_unlink(ch);
	shmchan_close(ch);
	return 0;
}

int reader(const peer::Flags &f)
{
	std::string start = f.text("start", "oldest");
	if (start != "oldest" && start != "latest")
		f.usage();
	uint64_t delay_us = f.u64("delay-us", 0);
	int64_t timeout_ns = int64_t(f.num("timeout", 60) * 1e9);
	shmchan_channel *ch = open_broadcast(f.name);
	struct shmchan_info info;
	shmchan_info(ch, &info);
	int want = policy_of(f);
	if (want >= 0 && info.policy != uint32_t(want)) {
		peer::die_incompatible("the channel's policy is " + std::to_string(info.policy) + ", expected " +
				       std::to_string(want));
	}
	const uint64_t slot_size = info.slot_size;
	shmchan_reader *r = nullptr;
	int rc = shmchan_reader_attach_ex(ch, start == "oldest" ? SHMCHAN_START_OLDEST : SHMCHAN_START_LATEST, &r);
	if (rc)
		peer::die_rc(rc, "cannot attach a reader");
	const uint64_t start_pos = shmchan_reader_position(r);
	std::printf("ready position=%" PRIu64 "\n", start_pos);
	std::fflush(stdout);
	std::vector<uint8_t> buf(slot_size);
	uLong crc = crc32(0L, Z_NULL, 0);
	uint64_t delivered = 0, stale = 0, torn = 0, accounted_lost = 0;
	long long errors = 0;
	bool have_last = false, have_prev = false;
	uint64_t first = 0, last = 0, prev_taken = 0;
	/* an intact message, and the crc of everything delivered with it */
	auto deliver = [&](uint64_t seq, uLong new_crc) {
		if (have_last && seq <= last)
			peer::count_error(errors, "message " + std::to_string(seq) + " after " + std::to_string(last));
		if (!have_last)
			first = seq;
		have_last = true;
		last = seq;
		delivered++;
		crc = new_crc;
	};
	double t0 = peer::now_s();
	for (uint64_t i = 0;; i++) {
		std::string why;
		uint64_t seq = 0;
		if (delay_us && i % 4 == 3) {
			uint64_t before = shmchan_reader_lost(r), len = 0;
			do
				rc = shmchan_recv(r, buf.data(), buf.size(), &len, timeout_ns);
			while (rc == -EINTR);
			if (rc == -SHMCHAN_EENDED)
				break;
			if (rc)
				peer::die_rc(rc, "cannot receive");
			accounted_lost += shmchan_reader_lost(r) - before;
			have_prev = false; /* positions it skipped internally are not known here */
			if (peer::message::verify(buf.data(), len, slot_size, seq, why))
				deliver(seq, crc32(crc, buf.data(), uInt(len)));
			else
				peer::count_error(errors, "copied message: " + why);
			peer::sleep_us(delay_us);
			continue;
		}
		struct shmchan_msg m;
		do
			rc = shmchan_peek(r, timeout_ns, &m);
		while (rc == -EINTR);
		if (rc == -SHMCHAN_EENDED)
			break;
		if (rc)
			peer::die_rc(rc, "cannot receive");
		accounted_lost += m.lost;
		if (have_prev && m.pos != prev_taken + 1 + m.lost)
			peer::count_error(errors, "message " + std::to_string(m.pos) + " (lost " + std::to_string(m.lost) +
							  ") after message " + std::to_string(prev_taken));
		have_prev = true;
		prev_taken = m.pos;
		peer::sleep_us(delay_us); /* hold it: a lapping writer may rewrite it now */
		const uint8_t *p = static_cast<const uint8_t *>(m.data);
		bool ok = peer::message::verify(p, m.len, slot_size, seq, why);
		uLong next_crc = crc32(crc, p, uInt(m.len));
		bool intact = shmchan_check(r, m.pos) == 0;
		if (!ok && !intact)
			torn++; /* torn, and the API said so */
		else if (!ok)
			peer::count_error(errors, "message " + std::to_string(m.pos) + " claimed intact: " + why);
		else if (intact && seq != m.pos)
			peer::count_error(errors, "message at position " + std::to_string(m.pos) + " holds " + std::to_string(seq));
		rc = shmchan_release(r, m.pos);
		if (rc == -ESTALE) {
			stale++;
			accounted_lost++;
		} else if (rc) {
			peer::die_rc(rc, "cannot release");
		} else if (!intact) {
			peer::count_error(errors, "message " + std::to_string(m.pos) + ": check said lapped, release said intact");
		} else {
			deliver(m.pos, next_crc);
		}
	}
	const uint64_t end = shmchan_reader_position(r), lost = shmchan_reader_lost(r);
	if (accounted_lost != lost)
		peer::count_error(errors, "the messages' lost counts add up to " + std::to_string(accounted_lost) +
						  ", the reader's to " + std::to_string(lost));
	if (delivered + lost != end - start_pos)
		peer::count_error(errors, std::to_string(delivered) + " delivered + " + std::to_string(lost) +
						  " lost != positions " + std::to_string(start_pos) + ".." + std::to_string(end));
	auto opt = [&](uint64_t v) { return have_last ? std::to_string(v) : std::string("none"); };
	std::printf("done messages=%" PRIu64 " lost=%" PRIu64 " stale=%" PRIu64 " torn=%" PRIu64
		    " errors=%lld first=%s last=%s start=%" PRIu64 " end=%" PRIu64 " crc=%08lx seconds=%.6f\n",
		    delivered, lost, stale, torn, errors, opt(first).c_str(), opt(last).c_str(), start_pos, end, crc,
		    peer::now_s() - t0);
	std::fflush(stdout);
	shmchan_reader_close(r);
	shmchan_close(ch);
	return errors ? 1 : 0;
}

}  // namespace

int main(int argc, char **argv)
{
	peer::Flags f = peer::parse_flags(argc, argv, USAGE, {"create", "hold"},
					  {"slot-size", "capacity", "max-readers", "policy", "messages", "wait-readers",
					   "interval-us", "timeout", "start", "delay-us"});
	if (f.mode == "writer")
		return writer(f);
	if (f.mode == "reader")
		return reader(f);
	f.usage();
}
