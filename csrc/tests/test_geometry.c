/* SPDX-License-Identifier: MIT */
/* Geometry: shmchan_layout_size limits and overflow checks, and where slots land (stride, offsets, alignment). */
#include <sys/statvfs.h>

#include "testutil.h"

#define KIB 1024ull
#define MIB (1024ull * 1024)
#define SENTINEL 0xdeadbeefcafef00dull

struct geo_case {
	uint64_t slot_size;
	uint32_t capacity, slot_align, msync_policy;
	int want;
	uint64_t total; /* checked when want == 0 and total != 0 */
};

static uint64_t round_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

static void layout_size_limits(void)
{
	const uint64_t T40 = 1ull << 40;
	const struct geo_case cases[] = {
		/* valid: data at round_up(1024 + 8 * capacity, max(4096, align)), slots of round_up(size, align);
		   slot_align 0 means 64 under 4096 bytes, else 4096 */
		{64, 4, 0, 0, 0, 4096 + 4 * 64},
		{1, 1, 0, 0, 0, 4096 + 64},
		{4095, 2, 0, 0, 0, 4096 + 2 * 4096},
		{4096, 2, 0, 0, 0, 4096 + 2 * 4096},
		{4097, 2, 0, 0, 0, 4096 + 2 * 8192},
		{100, 8, 64, 0, 0, 4096 + 8 * 128},
		{64, 8, 64, 0, 0, 4096 + 8 * 64},
		{65, 8, 64, 0, 0, 4096 + 8 * 128},
		{1, 16, 8, 0, 0, 4096 + 16 * 8},
		{8, 1u << 24, 8, 0, 0, round_up(1024 + 8ull * (1u << 24), 4096) + (8ull << 24)},
		{8, 512, 8, 0, 0, round_up(1024 + 8 * 512, 4096) + 512 * 8},
		{T40, 1, 0, 0, 0, 4096 + T40},
		{1, 1, 2 * (uint32_t)MIB, 0, 0, 2 * MIB + 2 * MIB},
		{64, 4, 0, 1, 0, 0},
		{64, 4, 0, 2, 0, 0},
		{64, 4, 0, 3, 0, 0},
		{1ull << 22, 1u << 23, 0, 0, 0, round_up(1024 + 8ull * (1u << 23), 4096) + (1ull << 45)},
		/* slot_size */
		{0, 4, 0, 0, -EINVAL, 0},
		{T40 + 1, 1, 0, 0, -EINVAL, 0},
		{UINT64_MAX, 1, 0, 0, -EINVAL, 0},
		/* capacity */
		{64, 0, 0, 0, -EINVAL, 0},
		{64, 3, 0, 0, -EINVAL, 0},
		{64, 6, 0, 0, -EINVAL, 0},
		{64, 1u << 25, 0, 0, -EINVAL, 0},
		{64, (1u << 24) + 1, 0, 0, -EINVAL, 0},
		{64, UINT32_MAX, 0, 0, -EINVAL, 0},
		{64, 1u << 31, 0, 0, -EINVAL, 0},
		/* slot_align */
		{64, 4, 3, 0, -EINVAL, 0},
		{64, 4, 12, 0, -EINVAL, 0},
		{64, 4, 1, 0, -EINVAL, 0},
		{64, 4, 2, 0, -EINVAL, 0},
		{64, 4, 4, 0, -EINVAL, 0},
		{64, 4, 4 * (uint32_t)MIB, 0, -EINVAL, 0},
		{64, 4, 3 * (uint32_t)MIB, 0, -EINVAL, 0},
		{64, 4, 1u << 31, 0, -EINVAL, 0},
		{64, 4, UINT32_MAX, 0, -EINVAL, 0},
		/* msync policy */
		{64, 4, 0, 4, -EINVAL, 0},
		{64, 4, 0, UINT32_MAX, -EINVAL, 0},
		/* overflow: 2^24 slots of 2^40 bytes, and totals just over 2^46 */
		{T40, 1u << 24, 0, 0, -EOVERFLOW, 0},
		{1ull << 22, 1u << 24, 0, 0, -EOVERFLOW, 0},
		{T40, 1u << 6, 0, 0, -EOVERFLOW, 0},
		{T40, 1u << 24, 2 * (uint32_t)MIB, 0, -EOVERFLOW, 0},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct geo_case *c = &cases[i];
		struct shmchan_config cfg = t_config(c->slot_size, c->capacity);
		uint64_t total = SENTINEL;
		cfg.slot_align = c->slot_align;
		cfg.msync_policy = c->msync_policy;
		int rc = shmchan_layout_size(&cfg, &total);
		CHECK_MSG(rc == c->want, "case %zu (slot %llu, capacity %u, align %u, msync %u): got %d (%s), wanted %d", i,
			  (unsigned long long)c->slot_size, c->capacity, c->slot_align, c->msync_policy, rc,
			  shmchan_strerror(rc), c->want);
		if (rc == 0 && c->total)
			CHECK_MSG(total == c->total, "case %zu: total %llu, wanted %llu", i, (unsigned long long)total,
				  (unsigned long long)c->total);
		if (rc != 0)
			CHECK_MSG(total == SENTINEL, "case %zu: total written on failure", i);
		/* the total_size pointer may be NULL */
		CHECK_RC(shmchan_layout_size(&cfg, NULL), c->want);
	}
	CHECK_RC(shmchan_layout_size(NULL, NULL), -EINVAL);
}

/* create refuses every invalid geometry with the same code, and leaves nothing in /dev/shm. */
static void create_refuses_bad_geometry(void)
{
	const struct geo_case bad[] = {
		{0, 4, 0, 0, -EINVAL, 0},	       {64, 3, 0, 0, -EINVAL, 0},
		{64, 1u << 25, 0, 0, -EINVAL, 0},      {64, 4, 12, 0, -EINVAL, 0},
		{64, 4, 4, 0, -EINVAL, 0},	       {64, 4, 4 * (uint32_t)MIB, 0, -EINVAL, 0},
		{64, 4, 0, 4, -EINVAL, 0},	       {1ull << 40, 1u << 24, 0, 0, -EOVERFLOW, 0},
		{1ull << 22, 1u << 24, 0, 0, -EOVERFLOW, 0},
	};
	const char *name = t_name("badgeo");
	struct shmchan_diag diag;
	shmchan_channel *ch;
	char path[300];

	t_shm_path(path, sizeof(path), name);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct shmchan_config cfg = t_config(bad[i].slot_size, bad[i].capacity);
		cfg.slot_align = bad[i].slot_align;
		cfg.msync_policy = bad[i].msync_policy;
		diag.message[0] = '\0';
		int rc = shmchan_create(name, &cfg, &ch, &diag);
		CHECK_MSG(rc == bad[i].want, "case %zu: got %d (%s)", i, rc, shmchan_strerror(rc));
		CHECK(ch == NULL);
		CHECK(diag.message[0] != '\0');
		CHECK_MSG(!t_exists(path), "case %zu left %s", i, path);
	}
	CHECK_RC(shmchan_create(name, NULL, &ch, NULL), -EINVAL);
	CHECK(!t_exists(path));
}

static void check_slots(shmchan_channel *ch, uint64_t align)
{
	struct shmchan_info info;
	uint8_t *prev = NULL;

	CHECK_RC(shmchan_info(ch, &info), 0);
	for (uint32_t i = 0; i < info.capacity; i++) {
		uint8_t *p = shmchan_slot_address(ch, i);
		CHECK(p != NULL);
		CHECK_MSG((uintptr_t)p % align == 0, "slot %u at %p is not %llu-aligned", i, (void *)p,
			  (unsigned long long)align);
		if (prev)
			CHECK((uint64_t)(p - prev) == info.slot_stride);
		prev = p;
	}
	CHECK(shmchan_slot_address(ch, info.capacity) == NULL);
	CHECK(shmchan_slot_address(ch, UINT32_MAX) == NULL);
	CHECK(shmchan_slot_address(NULL, 0) == NULL);
}

/* The object's size on disk and the stride, offsets and alignment reported by shmchan_info. */
static void expect_geometry(const char *tag, uint64_t slot_size, uint32_t capacity, uint32_t slot_align,
			    uint64_t want_stride, uint32_t want_align, uint64_t want_data_align)
{
	struct shmchan_config cfg = t_config(slot_size, capacity);
	struct shmchan_info info;
	struct shmchan_diag diag;
	shmchan_channel *ch;
	shmchan_writer *w;
	uint64_t total;
	char path[300];
	struct stat st;
	void *data;
	uint32_t slot;
	const char *name = t_name(tag);

	cfg.slot_align = slot_align;
	CHECK_RC(shmchan_layout_size(&cfg, &total), 0);
	CHECK_RC(shmchan_create(name, &cfg, &ch, &diag), 0);
	CHECK_RC(shmchan_info(ch, &info), 0);
	CHECK_MSG(info.slot_stride == want_stride, "stride %llu, wanted %llu", (unsigned long long)info.slot_stride,
		  (unsigned long long)want_stride);
	CHECK(info.slot_align == want_align);
	CHECK(info.slot_size == slot_size);
	CHECK(info.capacity == capacity);
	CHECK_MSG(info.data_offset % want_data_align == 0 && info.data_offset >= 1024 + 8ull * capacity,
		  "data_offset %llu", (unsigned long long)info.data_offset);
	CHECK(info.total_size == total);
	CHECK(info.total_size == info.data_offset + (uint64_t)capacity * info.slot_stride);
	CHECK(info.version_major == shmchan_layout_major() && info.version_minor == shmchan_layout_minor());
	CHECK(info.is_creator == 1);
	t_shm_path(path, sizeof(path), name);
	CHECK(stat(path, &st) == 0 && (uint64_t)st.st_size == total);
	check_slots(ch, want_align > 4096 ? 4096 : want_align);
	/* reserve hands out exactly those addresses */
	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	for (uint32_t i = 0; i < capacity; i++) {
		CHECK_RC(shmchan_reserve(w, 1, 0, &data, &slot), 0);
		CHECK(slot == i && data == shmchan_slot_address(ch, i));
		CHECK_RC(shmchan_commit(w, 1), 0);
	}
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

/* slot_align 0: small slots pack on cache lines, slots of a page or more start on a page */
static void default_alignment_follows_slot_size(void)
{
	expect_geometry("dflt1", 100, 8, 0, 128, 64, 4096);
	expect_geometry("dflt2", 64, 1024, 0, 64, 64, 4096); /* lens table (8 KiB) pushes data to 12 KiB */
	expect_geometry("dflt3", 4095, 4, 0, 4096, 64, 4096);
	expect_geometry("dflt4", 4096, 4, 0, 4096, 4096, 4096);
	expect_geometry("dflt5", 5000, 4, 0, 8192, 4096, 4096);
	CHECK(shmchan_default_slot_align(1) == 64 && shmchan_default_slot_align(4095) == 64);
	CHECK(shmchan_default_slot_align(4096) == 4096 && shmchan_default_slot_align(1ull << 40) == 4096);
}

static void explicit_small_alignment(void)
{
	expect_geometry("al64a", 100, 8, 64, 128, 64, 4096);
	expect_geometry("al64b", 64, 8, 64, 64, 64, 4096);
	expect_geometry("al64c", 65, 8, 64, 128, 64, 4096);
	expect_geometry("al8", 1, 16, 8, 8, 8, 4096);
	expect_geometry("al8b", 13, 16, 8, 16, 8, 4096);
	expect_geometry("al4k", 100, 4, 4096, 4096, 4096, 4096);
}

/* With slot_align above the page size the data offset is a multiple of it in the object. */
static void large_alignment_offsets(void)
{
	expect_geometry("al64k", 100, 4, 65536, 65536, 65536, 65536);
	expect_geometry("al2m", 1, 2, 2 * (uint32_t)MIB, 2 * MIB, 2 * (uint32_t)MIB, 2 * MIB);
}

/*
 * slot_align promises aligned slots; above the page size that needs an aligned mapping, not only an
 * aligned file offset. Checked over several handles so that a lucky mmap address cannot pass it.
 */
static void large_alignment_addresses(void)
{
	const uint32_t aligns[] = {65536, 2 * (uint32_t)MIB};
	struct shmchan_diag diag;

	for (size_t k = 0; k < 2; k++) {
		struct shmchan_config cfg = t_config(100, 2);
		shmchan_channel *ch[6];
		char tag[32];
		snprintf(tag, sizeof(tag), "bigal%zu", k);
		cfg.slot_align = aligns[k];
		CHECK_RC(shmchan_create(t_name(tag), &cfg, &ch[0], &diag), 0);
		for (int i = 1; i < 6; i++)
			CHECK_RC(shmchan_open(t_name(tag), T_MS(100), &ch[i], &diag), 0);
		for (int i = 0; i < 6; i++) {
			uintptr_t a = (uintptr_t)shmchan_slot_address(ch[i], 0);
			CHECK_MSG(a % aligns[k] == 0, "handle %d: slot 0 at %#lx with slot_align %u (misaligned by %lu)",
				  i, (unsigned long)a, aligns[k], (unsigned long)(a % aligns[k]));
		}
		for (int i = 5; i >= 0; i--)
			shmchan_close(ch[i]);
		CHECK_RC(shmchan_unlink(t_name(tag)), 0);
	}
}

/* A valid geometry larger than /dev/shm fails at create (posix_fallocate), fast, and leaves nothing. */
static void oversized_create_fails_cleanly(void)
{
	struct shmchan_config cfg = t_config(1ull << 40, 1);
	struct shmchan_diag diag;
	struct statvfs sv;
	shmchan_channel *ch;
	char path[300];
	int64_t t0;
	int rc;

	if (statvfs("/dev/shm", &sv) != 0 || sv.f_blocks == 0 || (uint64_t)sv.f_blocks * sv.f_frsize >= (1ull << 40)) {
		printf("  (skipped: /dev/shm has no size limit below 1 TiB)\n");
		return;
	}
	t_shm_path(path, sizeof(path), t_name("huge"));
	t0 = t_now_ns();
	rc = shmchan_create(t_name("huge"), &cfg, &ch, &diag);
	CHECK_MSG(rc == -ENOSPC || rc == -ENOMEM || rc == -EFBIG, "create of 1 TiB returned %d (%s)", rc,
		  shmchan_strerror(rc));
	CHECK(ch == NULL);
	CHECK(diag.message[0] != '\0');
	CHECK(t_now_ns() - t0 < T_MS(2000));
	CHECK_MSG(!t_exists(path), "the failed create left %s", path);
}

int main(void)
{
	int fails = 0;

	t_init();
	fails += t_case("layout_size_limits", layout_size_limits, 10);
	fails += t_case("create_refuses_bad_geometry", create_refuses_bad_geometry, 10);
	fails += t_case("default_alignment_follows_slot_size", default_alignment_follows_slot_size, 10);
	fails += t_case("explicit_small_alignment", explicit_small_alignment, 10);
	fails += t_case("large_alignment_offsets", large_alignment_offsets, 10);
	fails += t_case("large_alignment_addresses", large_alignment_addresses, 10);
	fails += t_case("oversized_create_fails_cleanly", oversized_create_fails_cleanly, 10);
	return t_done(fails);
}
