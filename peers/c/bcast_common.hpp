// SPDX-License-Identifier: MIT
// Shared by the C++ broadcast and state-board peers: their command line, and the payloads of the
// cross-language tests (tests/test_interop_bcast.py), defined identically in Python and Rust
// (peers/rust/src/interop.rs): every byte is derived from one number, so a reader can tell a torn
// or misplaced value from a good one. Uses only the public C API and the generated headers.
#pragma once

#include <set>
#include <thread>

#include "peer_common.hpp"

namespace peer {

/* ---- broadcast messages ----
 * Message seq has 2 + seq % (slot_size/8 - 1) little-endian u64 words; word 0 is seq, word j >= 1
 * is (seq + j) * K (wrapping). Two different messages never agree on any word. */
namespace message {

constexpr uint64_t K = 0x9E3779B97F4A7C15ull;

inline size_t len(uint64_t seq, uint64_t slot_size)
{
	uint64_t words = slot_size / 8 < 2 ? 2 : slot_size / 8;
	return size_t(8 * (2 + seq % (words - 1)));
}

inline uint64_t word(uint64_t seq, size_t j)
{
	return j == 0 ? seq : (seq + j) * K;
}

inline void fill(uint8_t *dst, size_t n, uint64_t seq)
{
	for (size_t j = 0; j < n / 8; j++) {
		uint64_t w = word(seq, j);
		std::memcpy(dst + 8 * j, &w, 8); /* little-endian hosts only, like the rest of shmchan */
	}
}

/* true (with seq) for a well-formed message, else false with why. */
inline bool verify(const uint8_t *src, size_t n, uint64_t slot_size, uint64_t &seq, std::string &why)
{
	if (n < 16 || n % 8) {
		why = "a message of " + std::to_string(n) + " bytes";
		return false;
	}
	std::memcpy(&seq, src, 8);
	if (n != len(seq, slot_size)) {
		why = "message " + std::to_string(seq) + " has " + std::to_string(n) + " bytes, expected " +
		      std::to_string(len(seq, slot_size));
		return false;
	}
	for (size_t j = 0; j < n / 8; j++) {
		uint64_t w;
		std::memcpy(&w, src + 8 * j, 8);
		if (w != word(seq, j)) {
			why = "message " + std::to_string(seq) + ": word " + std::to_string(j) + " is wrong";
			return false;
		}
	}
	return true;
}

}  // namespace message

/* ---- state-board values ----
 * A 256-byte record, the numpy dtype of NUMPY_DESCR, every field derived from the counter seq:
 * neg = -seq, half = seq / 2, lo/hi its halves, mix = lo ^ hi ^ 0xA5A5A5A5,
 * arr[i] = (seq + i) * 2654435761 mod 2^32; last is 1 on the writer's final value. */
namespace counter {

constexpr size_t SIZE = 256, ARR = 54;
constexpr uint64_t MUL = 2654435761ull;
/* what Python's State.create(dtype=...) stores as ChannelInfo.numpy_descr for this dtype */
constexpr const char *NUMPY_DESCR =
	"([('seq', '<u8'), ('neg', '<i8'), ('half', '<f8'), ('lo', '<u4'), ('hi', '<u4'), "
	"('last', '<u4'), ('mix', '<u4'), ('arr', '<u4', (54,))], ())";

struct Record {
	uint64_t seq;
	int64_t neg;
	double half;
	uint32_t lo, hi, last, mix;
	uint32_t arr[ARR];
};
static_assert(sizeof(Record) == SIZE, "the record is the numpy dtype, without padding");

inline Record make(uint64_t seq, bool last)
{
	Record r;
	r.seq = seq;
	r.neg = int64_t(0 - seq);
	r.half = double(seq) * 0.5;
	r.lo = uint32_t(seq);
	r.hi = uint32_t(seq >> 32);
	r.last = last ? 1 : 0;
	r.mix = r.lo ^ r.hi ^ 0xA5A5A5A5u;
	for (size_t i = 0; i < ARR; i++)
		r.arr[i] = uint32_t((seq + i) * MUL);
	return r;
}

/* true (with seq and last) for a consistent record, else false with why. */
inline bool decode(const uint8_t *b, size_t n, uint64_t &seq, bool &last, std::string &why)
{
	if (n != SIZE) {
		why = "a value of " + std::to_string(n) + " bytes";
		return false;
	}
	Record r;
	std::memcpy(&r, b, SIZE);
	seq = r.seq;
	if (r.last > 1) {
		why = "value " + std::to_string(seq) + ": last is " + std::to_string(r.last);
		return false;
	}
	last = r.last == 1;
	Record want = make(seq, last);
	if (std::memcmp(&r, &want, SIZE) != 0) {
		why = "value " + std::to_string(seq) + " is torn or inconsistent";
		return false;
	}
	return true;
}

}  // namespace counter

/* The decoded ChannelInfo's numpy_descr ("" when there is none). */
inline std::string channel_numpy_descr(shmchan_channel *ch)
{
	struct shmchan_info info;
	shmchan_info(ch, &info);
	std::vector<uint8_t> d(info.descriptor_size);
	uint64_t len = 0;
	if (d.empty() || shmchan_read_descriptor(ch, d.data(), d.size(), &len) != 0)
		return "";
	flatbuffers::Verifier v(d.data(), len);
	if (!fb::ChannelInfoBufferHasIdentifier(d.data()) || !fb::VerifyChannelInfoBuffer(v))
		return "";
	const fb::ChannelInfo *ci = fb::GetChannelInfo(d.data());
	return ci->numpy_descr() ? ci->numpy_descr()->str() : "";
}

/* ---- command line: MODE NAME [--switch] [--key VALUE]... ---- */

struct Flags {
	std::string mode, name;
	std::map<std::string, std::string> values;
	std::set<std::string> switches;
	const char *usage_text = "";

	[[noreturn]] void usage() const
	{
		std::fprintf(stderr, "%s\n", usage_text);
		std::exit(2);
	}
	bool has(const std::string &k) const { return switches.count(k) != 0; }
	std::string text(const std::string &k, const std::string &dflt) const
	{
		auto it = values.find(k);
		return it == values.end() ? dflt : it->second;
	}
	double num(const std::string &k, double dflt) const
	{
		auto it = values.find(k);
		if (it == values.end())
			return dflt;
		char *end = nullptr;
		double v = std::strtod(it->second.c_str(), &end);
		if (!end || *end || it->second.empty())
			usage();
		return v;
	}
	uint64_t u64(const std::string &k, uint64_t dflt) const
	{
		auto it = values.find(k);
		if (it == values.end())
			return dflt;
		char *end = nullptr;
		unsigned long long v = std::strtoull(it->second.c_str(), &end, 10);
		if (!end || *end || it->second.empty())
			usage();
		return v;
	}
};

inline Flags parse_flags(int argc, char **argv, const char *usage_text, const std::set<std::string> &switches,
			 const std::set<std::string> &valued)
{
	Flags f;
	f.usage_text = usage_text;
	if (argc < 3)
		f.usage();
	f.mode = argv[1];
	f.name = argv[2];
	for (int i = 3; i < argc; i++) {
		std::string k = argv[i];
		if (k.rfind("--", 0) != 0)
			f.usage();
		k = k.substr(2);
		if (switches.count(k))
			f.switches.insert(k);
		else if (valued.count(k) && i + 1 < argc)
			f.values[k] = argv[++i];
		else
			f.usage();
	}
	return f;
}

/* Waits for the line "go" on stdin; false if stdin ends first. */
inline bool wait_for_go()
{
	std::string line;
	while (std::getline(std::cin, line))
		if (line == "go")
			return true;
	return false;
}

inline void sleep_us(uint64_t us)
{
	if (us)
		std::this_thread::sleep_for(std::chrono::microseconds(us));
}

/* Counts an error; the first ten are described on stderr. */
inline void count_error(long long &errors, const std::string &what)
{
	if (++errors <= 10)
		std::fprintf(stderr, "%s\n", what.c_str());
}

}  // namespace peer
