/* SPDX-License-Identifier: MIT */
/* The channel descriptor: stored at create, read back by every opener, and refused when its header fields lie. */
#include "testutil.h"

#include "layout.h"

static char desc[1000];

static void make(const char *name, shmchan_channel **ch)
{
	struct shmchan_config cfg = t_config(100, 8);
	struct shmchan_diag diag;

	for (size_t i = 0; i < sizeof(desc); i++)
		desc[i] = (char)(i * 7 + 3);
	cfg.descriptor = desc;
	cfg.descriptor_size = sizeof(desc);
	CHECK_RC(shmchan_create(name, &cfg, ch, &diag), 0);
}

static void round_trip(void)
{
	const char *name = t_name("desc-rt");
	shmchan_channel *ch, *other;
	struct shmchan_info info;
	char buf[2000];
	uint64_t len = 0;

	make(name, &ch);
	CHECK_RC(shmchan_open(name, 1000000000, &other, NULL), 0);
	CHECK_RC(shmchan_info(other, &info), 0);
	CHECK(info.descriptor_size == sizeof(desc));
	CHECK(info.data_offset % 4096 == 0 && info.data_offset >= 1024 + 8 * 8 + sizeof(desc));
	CHECK_RC(shmchan_read_descriptor(other, buf, sizeof(buf), &len), 0);
	CHECK(len == sizeof(desc) && memcmp(buf, desc, sizeof(desc)) == 0);
	CHECK_RC(shmchan_read_descriptor(other, buf, 10, &len), -EMSGSIZE);
	CHECK(len == sizeof(desc));
	CHECK((uintptr_t)shmchan_slot_address(other, 0) % 4096 == 0);
	shmchan_close(other);
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

static void none_by_default(void)
{
	struct shmchan_config cfg = t_config(100, 8);
	shmchan_channel *ch;
	struct shmchan_info info;
	uint64_t len = 99;

	CHECK_RC(shmchan_create(t_name("desc-none"), &cfg, &ch, NULL), 0);
	CHECK_RC(shmchan_info(ch, &info), 0);
	CHECK(info.descriptor_size == 0 && info.data_offset == 4096);
	CHECK_RC(shmchan_read_descriptor(ch, NULL, 0, &len), 0);
	CHECK(len == 0);
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

static void bad_configs(void)
{
	struct shmchan_config cfg = t_config(100, 8);
	static char big[70000];
	char path[300];
	shmchan_channel *ch;
	const char *name = t_name("desc-bad");

	cfg.descriptor = big;
	cfg.descriptor_size = sizeof(big);
	CHECK_RC(shmchan_create(name, &cfg, &ch, NULL), -EINVAL);
	cfg.descriptor = NULL;
	cfg.descriptor_size = 10;
	CHECK_RC(shmchan_create(name, &cfg, &ch, NULL), -EINVAL);
	CHECK(!t_exists(t_shm_path(path, sizeof(path), name)));
}

static void lying_header_fields(void)
{
	const struct {
		size_t off;
		uint64_t delta;
		uint64_t value; /* used when delta == 0 */
	} pokes[] = {
		{SHMCHAN_OFF_DESCRIPTOR_SIZE, 0, SHMCHAN_MAX_DESCRIPTOR_SIZE + 1ull},
		{SHMCHAN_OFF_DESCRIPTOR_SIZE, 0, UINT64_MAX},
		{SHMCHAN_OFF_DESCRIPTOR_SIZE, 4000, 0}, /* would run into the slots */
		{SHMCHAN_OFF_DESCRIPTOR_OFFSET, 8, 0},
		{SHMCHAN_OFF_DESCRIPTOR_OFFSET, 0, 0},
		{SHMCHAN_OFF_DESCRIPTOR_OFFSET, 0, UINT64_MAX - 10},
	};
	for (size_t i = 0; i < sizeof(pokes) / sizeof(pokes[0]); i++) {
		const char *name = t_name("desc-lie");
		shmchan_channel *ch, *other;
		struct shmchan_diag diag;
		struct t_map m;

		make(name, &ch);
		m = t_map_object(name);
		t_put64(&m, pokes[i].off, pokes[i].delta ? t_get64(&m, pokes[i].off) + pokes[i].delta : pokes[i].value);
		CHECK_RC(shmchan_open(name, 100000000, &other, &diag), -SHMCHAN_ECORRUPT);
		CHECK(diag.message[0] != 0);
		t_unmap(&m);
		CHECK_RC(shmchan_channel_unlink(ch), 0);
		shmchan_close(ch);
	}
}

int main(void)
{
	int failures = 0;

	t_init();
	failures += t_case("round_trip", round_trip, 10);
	failures += t_case("none_by_default", none_by_default, 10);
	failures += t_case("bad_configs", bad_configs, 10);
	failures += t_case("lying_header_fields", lying_header_fields, 10);
	return t_done(failures);
}
