/* SPDX-License-Identifier: MIT */
/* shmchan_inspect: monitoring tools look at messages without taking them, and never get a torn copy. */
#include <pthread.h>

#include "testutil.h"

static void looks_without_taking(void)
{
	struct shmchan_config cfg = t_config(64, 4);
	shmchan_channel *ch, *mon;
	shmchan_writer *w;
	shmchan_reader *r;
	const char *name = t_name("inspect");
	char buf[64];
	uint64_t len, first, end;

	CHECK_RC(shmchan_create(name, &cfg, &ch, NULL), 0);
	CHECK_RC(shmchan_open(name, 1000000000, &mon, NULL), 0); /* a monitor: no reader, no writer */
	CHECK_RC(shmchan_inspect(mon, 0, buf, sizeof(buf), &len, &first, &end), -ENOENT);
	CHECK(first == 0 && end == 0);
	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	CHECK_RC(shmchan_reader_attach(ch, &r), 0);
	CHECK_RC(shmchan_send(w, "zero", 4, 0), 0);
	CHECK_RC(shmchan_send(w, "one!", 4, 0), 0);
	CHECK_RC(shmchan_send(w, "two", 3, 0), 0);
	CHECK_RC(shmchan_inspect(mon, 1, buf, sizeof(buf), &len, &first, &end), 0);
	CHECK(len == 4 && memcmp(buf, "one!", 4) == 0 && first == 0 && end == 3);
	CHECK_RC(shmchan_inspect(mon, 3, buf, sizeof(buf), &len, &first, &end), -ENOENT);
	CHECK_RC(shmchan_inspect(mon, 2, buf, 2, &len, &first, &end), -EMSGSIZE);
	CHECK(len == 3);
	CHECK_RC(shmchan_recv(r, buf, sizeof(buf), &len, 0), 0); /* inspecting took nothing */
	CHECK(len == 4 && memcmp(buf, "zero", 4) == 0);
	CHECK_RC(shmchan_inspect(mon, 0, buf, sizeof(buf), &len, &first, &end), -ENOENT);
	CHECK(first == 1 && end == 3);
	shmchan_close(mon);
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

#define N 200000
#define SZ 256
static shmchan_channel *g_ch;
static const char *g_name;

static void *producer(void *arg)
{
	shmchan_writer *w;
	unsigned char msg[SZ];
	(void)arg;
	CHECK_RC(shmchan_writer_attach(g_ch, &w), 0);
	for (uint64_t i = 0; i < N; i++) {
		memset(msg, (int)(i & 0xff), sizeof(msg));
		memcpy(msg, &i, sizeof(i));
		CHECK_RC(shmchan_send(w, (const char *)msg, sizeof(msg), 5000000000), 0);
	}
	return NULL;
}

static void *consumer(void *arg)
{
	shmchan_channel *ch;
	shmchan_reader *r;
	unsigned char msg[SZ];
	uint64_t len;
	(void)arg;
	CHECK_RC(shmchan_open(g_name, 1000000000, &ch, NULL), 0);
	CHECK_RC(shmchan_reader_attach(ch, &r), 0);
	for (uint64_t i = 0; i < N; i++)
		CHECK_RC(shmchan_recv(r, msg, sizeof(msg), &len, 5000000000), 0);
	shmchan_close(ch);
	return NULL;
}

static void never_torn_under_traffic(void)
{
	struct shmchan_config cfg = t_config(SZ, 8);
	shmchan_channel *mon;
	pthread_t p, c;
	unsigned char buf[SZ];
	uint64_t len, first, end, ok = 0, stale = 0;

	g_name = t_name("inspect-race");
	CHECK_RC(shmchan_create(g_name, &cfg, &g_ch, NULL), 0);
	CHECK_RC(shmchan_open(g_name, 1000000000, &mon, NULL), 0);
	CHECK(pthread_create(&c, NULL, consumer, NULL) == 0);
	CHECK(pthread_create(&p, NULL, producer, NULL) == 0);
	for (;;) {
		int rc = shmchan_inspect(mon, 0, buf, sizeof(buf), &len, &first, &end);
		if (rc == -ESTALE)
			continue;
		CHECK(rc == 0 || rc == -ENOENT);
		if (first == N)
			break;
		if (first == end)
			continue;
		rc = shmchan_inspect(mon, first, buf, sizeof(buf), &len, &first, &end);
		if (rc == 0) {
			uint64_t seq;
			memcpy(&seq, buf, sizeof(seq));
			CHECK(len == SZ);
			for (size_t k = sizeof(seq); k < SZ; k++)
				CHECK(buf[k] == (unsigned char)(seq & 0xff)); /* all of one message */
			ok++;
		} else {
			CHECK(rc == -ESTALE || rc == -ENOENT);
			stale += rc == -ESTALE;
		}
	}
	pthread_join(p, NULL);
	pthread_join(c, NULL);
	printf("  %llu clean copies, %llu discarded as stale\n", (unsigned long long)ok, (unsigned long long)stale);
	CHECK(ok > 0);
	shmchan_close(mon);
	CHECK_RC(shmchan_channel_unlink(g_ch), 0);
	shmchan_close(g_ch);
}

int main(void)
{
	int failures = 0;

	t_init();
	failures += t_case("looks_without_taking", looks_without_taking, 10);
	failures += t_case("never_torn_under_traffic", never_torn_under_traffic, 60);
	return t_done(failures);
}
