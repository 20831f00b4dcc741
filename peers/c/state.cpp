// SPDX-License-Identifier: MIT
// C++ state-board peer, through the public C API (the same command line as the Rust and Python
// ones in tests/test_interop_bcast.py).
//
//   shmchan-state writer NAME [--create] [--writes N] [--seconds S] [--interval-us U] [--go] [--hold]
//     Creates the board (a ChannelInfo of kind State whose numpy_descr is the interop counter
//     record, so Python reads it as a structured numpy value) or opens it, attaches the writer and
//     prints "ready"; with --go waits for the line "go" on stdin. Then publishes the counter record
//     of k = its version (reserved and filled in place), for k = 1, 2, ... until it has written at
//     least N values and S seconds have passed, the last with last=1, and prints
//     "done writes=W version=V seconds=S". With --hold, waits for "exit" before it goes.
//   shmchan-state reader NAME [--wait] [--timeout S]
//     Checks that the board holds counter records, prints "ready", then reads the board
//     (shmchan_state_read) as fast as it can (with --wait: sleeps in shmchan_state_wait until the
//     version changes, then reads) until it reads the final value. Every value must be consistent,
//     equal to its version, and versions never go back. Prints "done reads=R versions=V nodata=K
//     errors=E first=F last=L seconds=S". Exits 1 when E > 0.
#include <sched.h>
#include "bcast_common.hpp"

namespace {

const char *USAGE =
	"usage: shmchan-state writer NAME [--create] [--writes N] [--seconds S] [--interval-us U] [--go] [--hold]\n"
	"       shmchan-state reader NAME [--wait] [--timeout S]";

/* Slots and alignment of a state board (the core requires 2 slots; 64 is what Python's
   State.create uses, so a board looks the same from every language). */
constexpr uint32_t STATE_SLOTS = 2, STATE_ALIGN = 64;

shmchan_channel *open_state(const std::string &name)
{
	shmchan_channel *ch = nullptr;
	struct shmchan_diag diag;
	int rc = shmchan_open(name.c_str(), 5000000000ll, &ch, &diag);
	if (rc)
		peer::die_rc(rc, std::string("cannot open channel: ") + diag.message);
	if (shmchan_kind(ch) != SHMCHAN_KIND_STATE)
		peer::die_incompatible("channel " + name + " is not a state board (kind " + std::to_string(shmchan_kind(ch)) +
				       ")");
	return ch;
}

int writer(const peer::Flags &f)
{
	uint64_t writes = f.u64("writes", 1000);
	double seconds = f.num("seconds", 0);
	uint64_t interval_us = f.u64("interval-us", 0);
	shmchan_channel *ch = nullptr;
	if (f.has("create")) {
		struct shmchan_config cfg;
		std::memset(&cfg, 0, sizeof cfg);
		cfg.slot_size = peer::counter::SIZE;
		cfg.capacity = STATE_SLOTS;
		cfg.slot_align = STATE_ALIGN;
		cfg.kind = SHMCHAN_KIND_STATE;
		auto d = peer::build_channel_info(cfg.slot_size, cfg.capacity, cfg.slot_align, nullptr, peer::fb::DType::Unknown,
						  nullptr, {}, peer::fb::ChannelKind::State, peer::counter::NUMPY_DESCR);
		cfg.descriptor = d.data();
		cfg.descriptor_size = uint32_t(d.size());
		struct shmchan_diag diag;
		int rc = shmchan_create(f.name.c_str(), &cfg, &ch, &diag);
		if (rc)
			peer::die_rc(rc, std::string("cannot create channel: ") + diag.message);
	} else {
		ch = open_state(f.name);
	}
	shmchan_writer *w = nullptr;
	int rc = shmchan_writer_attach(ch, &w);
	if (rc)
		peer::die_rc(rc, "cannot attach a writer");
	std::printf("ready\n");
	std::fflush(stdout);
	if (f.has("go") && !peer::wait_for_go()) {
		std::printf("error: stdin ended before \"go\"\n");
		return 1;
	}
	double t0 = peer::now_s();
	for (uint64_t n = 1;; n++) {
		bool last = n >= writes && peer::now_s() - t0 >= seconds;
		uint64_t k = shmchan_state_version(ch) + 1;
		void *data = nullptr;
		rc = shmchan_reserve(w, peer::counter::SIZE, 0, &data, nullptr);
		if (rc)
			peer::die_rc(rc, "cannot reserve");
		peer::counter::Record rec = peer::counter::make(k, last);
		std::memcpy(data, &rec, sizeof rec);
		rc = shmchan_commit(w, peer::counter::SIZE);
		if (rc)
			peer::die_rc(rc, "cannot commit");
		uint64_t v = shmchan_state_version(ch);
		if (v != k) {
			std::printf("error: published version %" PRIu64 ", expected %" PRIu64 "\n", v, k);
			return 1;
		}
		if (last) {
			std::printf("done writes=%" PRIu64 " version=%" PRIu64 " seconds=%.6f\n", n, v, peer::now_s() - t0);
			std::fflush(stdout);
			break;
		}
		peer::sleep_us(interval_us);
	}
	shmchan_writer_close(w);
	if (f.has("hold"))
		peer::wait_for_exit();
	if (f.has("create"))
		shmchan_channel_unlink(ch);
	shmchan_close(ch);
	return 0;
}

int reader(const peer::Flags &f)
{
	const bool wait = f.has("wait");
	const double timeout = f.num("timeout", 60);
	shmchan_channel *ch = open_state(f.name);
	struct shmchan_info info;
	shmchan_info(ch, &info);
	std::string descr = peer::channel_numpy_descr(ch);
	if (info.slot_size != peer::counter::SIZE || descr != peer::counter::NUMPY_DESCR)
		peer::die_incompatible("the board holds " + std::to_string(info.slot_size) + " bytes of numpy dtype '" + descr +
				       "'; expected " + std::to_string(peer::counter::SIZE) + " bytes of '" +
				       peer::counter::NUMPY_DESCR + "'");
	std::printf("ready\n");
	std::fflush(stdout);
	uint8_t buf[peer::counter::SIZE];
	uint64_t reads = 0, versions = 0, nodata = 0, first = 0, seen = 0;
	long long errors = 0;
	double t0 = peer::now_s();
	for (;;) {
		if (peer::now_s() - t0 > timeout) {
			std::printf("error timeout: no final value within %.1f s (last version %" PRIu64 ")\n", timeout, seen);
			std::fflush(stdout);
			return 5;
		}
		int rc;
		if (wait) {
			uint64_t now = 0;
			rc = shmchan_state_wait(ch, seen, 200000000, &now);
			if (rc == -ETIMEDOUT || rc == -EINTR)
				continue;
			if (rc)
				peer::die_rc(rc, "cannot wait on the board");
		}
		uint64_t len = 0, v = 0;
		rc = shmchan_state_read(ch, buf, sizeof buf, &len, &v);
		if (rc == -ENODATA) {
			nodata++;
			continue;
		}
		if (rc == -EBUSY) {
			/* the writer replaced the value faster than it could be copied (a loaded machine and a
			   writer in a tight loop): a live board's answer, not an error; look again */
			sched_yield();
			continue;
		}
		if (rc)
			peer::die_rc(rc, "cannot read the board");
		reads++;
		if (v < seen)
			peer::count_error(errors, "version " + std::to_string(v) + " after " + std::to_string(seen));
		uint64_t k = 0;
		bool fin = false;
		std::string why;
		if (!peer::counter::decode(buf, len, k, fin, why)) {
			peer::count_error(errors, "version " + std::to_string(v) + ": " + why);
			fin = false;
		} else if (k != v) {
			peer::count_error(errors, "version " + std::to_string(v) + " holds the value of " + std::to_string(k));
		}
		if (v != seen) {
			versions++;
			if (!first)
				first = v;
			seen = v;
		}
		if (fin)
			break;
	}
	std::printf("done reads=%" PRIu64 " versions=%" PRIu64 " nodata=%" PRIu64 " errors=%lld first=%" PRIu64
		    " last=%" PRIu64 " seconds=%.6f\n",
		    reads, versions, nodata, errors, first, seen, peer::now_s() - t0);
	std::fflush(stdout);
	shmchan_close(ch);
	return errors ? 1 : 0;
}

}  // namespace

int main(int argc, char **argv)
{
	peer::Flags f = peer::parse_flags(argc, argv, USAGE, {"create", "hold", "go", "wait"},
					  {"writes", "seconds", "interval-us", "timeout"});
	if (f.mode == "writer")
		return writer(f);
	if (f.mode == "reader")
		return reader(f);
	f.usage();
}
