/* SPDX-License-Identifier: MIT */
/* STATE channels: versions, short buffers, waits (new version, timeout, writer killed), one writer, and a hammer of readers that must never see a torn value. */
#include "testutil.h"

#define SLOT 1000u

/* ---- values: every byte derived from the version ---- */

static uint64_t mix(uint64_t x)
{
	x += 0x9E3779B97F4A7C15ull;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
	return x ^ (x >> 31);
}

static uint64_t len_of(uint64_t version, uint64_t slot)
{
	return 8 + mix(version ^ 0x7777) % (slot - 8 + 1); /* 8 .. slot */
}

/* Value of `version`: the version itself, then bytes derived from it. Returns the length. */
static uint64_t fill(uint8_t *dst, uint64_t version, uint64_t slot)
{
	const uint64_t n = len_of(version, slot);

	memcpy(dst, &version, 8);
	for (uint64_t i = 8; i < n; i++)
		dst[i] = (uint8_t)((mix(version) >> ((i & 7) * 8)) ^ (i >> 3));
	return n;
}

/* 1 when buf[0, len) is exactly the value of `version`. */
static int intact(const uint8_t *buf, uint64_t len, uint64_t version, uint64_t slot)
{
	uint8_t want[SLOT];

	if (len != len_of(version, slot) || len > sizeof(want))
		return 0;
	fill(want, version, slot);
	return memcmp(buf, want, (size_t)len) == 0;
}

/* Publishes the value of the writer's next version: alternately by send and in place. */
static void publish(shmchan_writer *w, uint64_t version)
{
	uint8_t buf[SLOT];
	void *data;

	if (version % 2) {
		uint64_t n = fill(buf, version, SLOT);
		CHECK_RC(shmchan_send(w, (const char *)buf, n, 0), 0);
	} else {
		CHECK_RC(shmchan_reserve(w, SLOT, 0, &data, NULL), 0);
		CHECK_RC(shmchan_commit(w, fill(data, version, SLOT)), 0);
	}
}

static struct shmchan_config st_config(uint64_t slot)
{
	struct shmchan_config cfg = t_config(slot, 2);
	cfg.kind = SHMCHAN_KIND_STATE;
	cfg.slot_align = 64;
	return cfg;
}

static shmchan_channel *st_create(const char *tag)
{
	struct shmchan_config cfg = st_config(SLOT);
	shmchan_channel *ch;

	CHECK_RC(shmchan_create(t_name(tag), &cfg, &ch, NULL), 0);
	return ch;
}

static shmchan_channel *st_open(const char *tag)
{
	shmchan_channel *ch;

	CHECK_RC(shmchan_open(t_name(tag), T_MS(2000), &ch, NULL), 0);
	return ch;
}

static void st_remove(shmchan_channel *ch)
{
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

/* Reads the value and checks that it is exactly version `want`. */
static void read_is(shmchan_channel *ch, uint64_t want)
{
	uint8_t buf[SLOT];
	uint64_t len = 0, v = 0;

	CHECK_RC(shmchan_state_read(ch, buf, sizeof(buf), &len, &v), 0);
	CHECK_MSG(v == want && intact(buf, len, v, SLOT), "version %llu (wanted %llu), %llu bytes",
		  (unsigned long long)v, (unsigned long long)want, (unsigned long long)len);
	CHECK(shmchan_state_version(ch) == want);
}

/* ---- cases ---- */

static void geometry_and_kind(void)
{
	const char *name = t_name("geom");
	struct shmchan_config c = st_config(64);
	struct shmchan_info info;
	shmchan_channel *ch, *spsc;
	shmchan_reader *r;
	uint64_t len, v;
	uint8_t buf[8];
	struct shmchan_config sc = t_config(64, 2);

	c.capacity = 4;
	CHECK_RC(shmchan_create(name, &c, &ch, NULL), -EINVAL);
	c.capacity = 1;
	CHECK_RC(shmchan_create(name, &c, &ch, NULL), -EINVAL);
	c = st_config(64);
	c.max_readers = 1;
	CHECK_RC(shmchan_create(name, &c, &ch, NULL), -EINVAL);
	c = st_config(64);
	c.policy = SHMCHAN_POLICY_OVERWRITE;
	CHECK_RC(shmchan_create(name, &c, &ch, NULL), -EINVAL);
	ch = st_create("geom");
	CHECK_RC(shmchan_info(ch, &info), 0);
	CHECK(info.kind == SHMCHAN_KIND_STATE && info.capacity == 2 && info.max_readers == 0 && info.policy == 0);
	CHECK_RC(shmchan_kind(ch), SHMCHAN_KIND_STATE);
	/* a board has no reader attachment: any handle reads it */
	CHECK_RC(shmchan_reader_attach(ch, &r), -EOPNOTSUPP);
	CHECK_RC(shmchan_reader_attach_ex(ch, SHMCHAN_START_OLDEST, &r), -EOPNOTSUPP);
	/* and the state calls refuse the other kinds */
	CHECK_RC(shmchan_create(t_name("spsc"), &sc, &spsc, NULL), 0);
	CHECK_RC(shmchan_state_read(spsc, buf, sizeof(buf), &len, &v), -EINVAL);
	CHECK_RC(shmchan_state_wait(spsc, 0, 0, &v), -EINVAL);
	CHECK(shmchan_state_version(spsc) == 0);
	st_remove(spsc);
	CHECK_RC(shmchan_state_read(ch, NULL, 8, &len, &v), -EINVAL);
	st_remove(ch);
}

static void versions_and_values(void)
{
	shmchan_channel *ch = st_create("versions"), *o = st_open("versions");
	shmchan_writer *w;
	struct shmchan_stats st;
	uint8_t buf[SLOT];
	uint64_t len = 77, v = 77;
	void *data;

	/* nothing published yet */
	CHECK_RC(shmchan_state_read(o, buf, sizeof(buf), &len, &v), -ENODATA);
	CHECK(v == 0 && shmchan_state_version(o) == 0);
	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	CHECK_RC(shmchan_state_read(o, buf, sizeof(buf), &len, &v), -ENODATA);
	/* versions 1, 2, 3 ..., each read back whole by both handles */
	for (uint64_t ver = 1; ver <= 50; ver++) {
		publish(w, ver);
		read_is(o, ver);
		read_is(ch, ver);
		read_is(o, ver); /* reading takes nothing: again the same */
	}
	/* an aborted reservation publishes nothing, even though it wrote into the other slot */
	CHECK_RC(shmchan_reserve(w, SLOT, 0, &data, NULL), 0);
	memset(data, 0xEE, SLOT);
	CHECK_RC(shmchan_abort(w), 0);
	read_is(o, 50);
	publish(w, 51);
	read_is(o, 51);
	/* an empty value is a value */
	CHECK_RC(shmchan_send(w, "", 0, 0), 0);
	CHECK_RC(shmchan_state_read(o, buf, sizeof(buf), &len, &v), 0);
	CHECK(v == 52 && len == 0);
	CHECK_RC(shmchan_state_read(o, NULL, 0, &len, &v), 0);
	/* a value larger than the slot is refused and changes nothing */
	CHECK_RC(shmchan_reserve(w, SLOT + 1, 0, &data, NULL), -EMSGSIZE);
	CHECK_RC(shmchan_send(w, (const char *)buf, SLOT + 1, 0), -EMSGSIZE);
	CHECK(shmchan_state_version(o) == 52);
	CHECK_RC(shmchan_stats(o, &st), 0);
	CHECK(st.head == 52 && st.messages_written == 52 && st.writer_state == 1);
	/* the board keeps its value and version after the writer leaves; a new writer goes on */
	shmchan_writer_close(w);
	CHECK_RC(shmchan_state_read(o, buf, sizeof(buf), &len, &v), 0);
	CHECK(v == 52 && len == 0);
	CHECK_RC(shmchan_writer_attach(o, &w), 0);
	publish(w, 53);
	read_is(ch, 53);
	shmchan_writer_close(w);
	shmchan_close(o);
	st_remove(ch);
}

static void short_buffer(void)
{
	shmchan_channel *ch = st_create("short");
	shmchan_writer *w;
	uint8_t buf[SLOT];
	uint64_t len = 0, v = 0, need;

	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	publish(w, 1);
	need = len_of(1, SLOT);
	CHECK(need > 8);
	CHECK_RC(shmchan_state_read(ch, buf, need - 1, &len, &v), -EMSGSIZE);
	CHECK(len == need && v == 1);
	CHECK_RC(shmchan_state_read(ch, NULL, 0, &len, &v), -EMSGSIZE);
	CHECK(len == need);
	CHECK_RC(shmchan_state_read(ch, buf, need, &len, &v), 0);
	CHECK(intact(buf, len, 1, SLOT));
	shmchan_writer_close(w);
	st_remove(ch);
}

static void wait_for_versions(void)
{
	shmchan_channel *ch = st_create("wait"), *o = st_open("wait");
	shmchan_writer *w;
	uint64_t now = 99, v;
	int64_t t0;
	int fds[2];
	pid_t pid;

	/* no writer ever attached: nothing to mourn, the wait just times out */
	CHECK_RC(shmchan_state_wait(o, 0, 0, &now), -EAGAIN);
	t0 = t_now_ns();
	CHECK_RC(shmchan_state_wait(o, 0, T_MS(80), &now), -ETIMEDOUT);
	CHECK(t_now_ns() - t0 >= T_MS(75));
	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	publish(w, 1);
	/* a version other than the caller's is there already: no wait */
	CHECK_RC(shmchan_state_wait(o, 0, -1, &now), 0);
	CHECK(now == 1);
	CHECK_RC(shmchan_state_wait(o, 1, 0, &now), -EAGAIN);
	t0 = t_now_ns();
	CHECK_RC(shmchan_state_wait(o, 1, T_MS(150), &now), -ETIMEDOUT);
	CHECK_MSG(t_now_ns() - t0 >= T_MS(145), "returned after %.1f ms", t_ms(t_now_ns() - t0));
	shmchan_writer_close(w);
	/* a writer in another process publishes while we sleep with no timeout */
	t_pipe(fds);
	pid = t_fork();
	if (pid == 0) {
		shmchan_channel *c = st_open("wait");
		shmchan_writer *cw;
		CHECK_RC(shmchan_writer_attach(c, &cw), 0);
		t_put_u64(fds[1], (uint64_t)t_now_ns());
		t_sleep_ms(150);
		t_put_u64(fds[1], (uint64_t)t_now_ns());
		publish(cw, 2);
		t_sleep_ms(100);
		publish(cw, 3);
		shmchan_writer_close(cw);
		shmchan_close(c);
		t_peer_exit(0);
	}
	CHECK_RC(t_get_u64(fds[0], &v, 5000), 0);
	CHECK_RC(shmchan_state_wait(o, 1, -1, &now), 0);
	t0 = t_now_ns();
	CHECK_MSG(now == 2 || now == 3, "woke at version %llu", (unsigned long long)now);
	CHECK_RC(t_get_u64(fds[0], &v, 5000), 0);
	printf("  woke %.2f ms after the writer went to publish\n", t_ms(t0 - (int64_t)v));
	CHECK(t0 >= (int64_t)v && t0 - (int64_t)v < T_MS(1000));
	CHECK_RC(shmchan_state_wait(o, 2, T_MS(5000), &now), 0);
	CHECK(now == 3);
	read_is(o, 3);
	CHECK_CHILD(pid, 5000, 0);
	close(fds[0]);
	close(fds[1]);
	/* the writer closed cleanly: a wait is a wait, not an error */
	CHECK_RC(shmchan_state_wait(o, 3, T_MS(30), &now), -ETIMEDOUT);
	shmchan_close(o);
	st_remove(ch);
}

static void wait_writer_killed(void)
{
	shmchan_channel *ch = st_create("killed");
	shmchan_writer *w;
	uint64_t now = 0, died;
	int64_t t1;
	int fds[2];
	pid_t pid;

	t_pipe(fds);
	pid = t_fork();
	if (pid == 0) {
		shmchan_channel *c = st_open("killed");
		shmchan_writer *cw;
		CHECK_RC(shmchan_writer_attach(c, &cw), 0);
		publish(cw, 1);
		t_sleep_ms(200); /* the parent is asleep in the wait by now */
		t_put_u64(fds[1], (uint64_t)t_now_ns());
		raise(SIGKILL);
		_exit(1);
	}
	while (shmchan_state_version(ch) == 0)
		t_sleep_ms(1);
	CHECK_RC(shmchan_state_wait(ch, 1, -1, &now), -SHMCHAN_EPEERDEAD);
	t1 = t_now_ns();
	CHECK_RC(t_get_u64(fds[0], &died, 5000), 0);
	printf("  EPEERDEAD %.1f ms after the writer's SIGKILL\n", t_ms(t1 - (int64_t)died));
	CHECK(t1 > (int64_t)died && t1 - (int64_t)died < T_MS(2000));
	CHECK_CHILD(pid, 5000, 128 + SIGKILL);
	close(fds[0]);
	close(fds[1]);
	/* a dead writer stays dead for every later wait; its last value is still there */
	CHECK_RC(shmchan_state_wait(ch, 1, 0, &now), -SHMCHAN_EPEERDEAD);
	CHECK_RC(shmchan_state_wait(ch, 1, T_MS(50), &now), -SHMCHAN_EPEERDEAD);
	read_is(ch, 1);
	/* a wait for a version we do not have yet answers with the value at once */
	CHECK_RC(shmchan_state_wait(ch, 0, -1, &now), 0);
	CHECK(now == 1);
	/* its lock died with it: a new writer attaches and goes on from version 1 */
	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	publish(w, 2);
	read_is(ch, 2);
	shmchan_writer_close(w);
	st_remove(ch);
}

static void one_writer_only(void)
{
	shmchan_channel *ch = st_create("busy"), *o = st_open("busy");
	shmchan_writer *w, *w2;
	int fds[2];
	uint64_t v;
	pid_t pid;

	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	CHECK_RC(shmchan_writer_attach(ch, &w2), -EBUSY);
	CHECK_RC(shmchan_writer_attach(o, &w2), -EBUSY);
	t_pipe(fds);
	pid = t_fork();
	if (pid == 0) {
		shmchan_channel *c = st_open("busy");
		shmchan_writer *cw;
		CHECK_RC(shmchan_writer_attach(c, &cw), -EBUSY);
		t_put_u64(fds[1], 1);
		t_peer_exit(0);
	}
	CHECK_RC(t_get_u64(fds[0], &v, 5000), 0);
	CHECK_CHILD(pid, 5000, 0);
	close(fds[0]);
	close(fds[1]);
	publish(w, 1);
	shmchan_writer_close(w);
	CHECK_RC(shmchan_writer_attach(o, &w2), 0);
	CHECK_RC(shmchan_writer_attach(ch, &w), -EBUSY);
	publish(w2, 2);
	read_is(ch, 2);
	shmchan_writer_close(w2);
	shmchan_close(o);
	st_remove(ch);
}

/* ---- the hammer ---- */

struct hammer_report {
	uint64_t reads, versions, busy, retries_seen, last;
};

static void hammer_reader(int idx, int ready_fd, int report_fd, int64_t until)
{
	shmchan_channel *ch = st_open("hammer");
	struct hammer_report rep;
	uint8_t buf[SLOT];
	uint64_t len, v, prev = 0;

	memset(&rep, 0, sizeof(rep));
	t_put_u64(ready_fd, (uint64_t)idx);
	while (t_now_ns() < until) {
		int rc = shmchan_state_read(ch, buf, sizeof(buf), &len, &v);
		if (rc == -ENODATA)
			continue;
		if (rc == -EBUSY) {
			rep.busy++; /* the writer outran 10000 copies: allowed, and nothing was returned */
			continue;
		}
		CHECK_RC(rc, 0);
		CHECK_MSG(v >= prev, "reader %d: version %llu after %llu", idx, (unsigned long long)v,
			  (unsigned long long)prev);
		CHECK_MSG(intact(buf, len, v, SLOT), "reader %d: version %llu torn (%llu bytes, claims %llu)", idx,
			  (unsigned long long)v, (unsigned long long)len,
			  (unsigned long long)(len >= 8 ? *(const uint64_t *)(const void *)buf : 0));
		rep.versions += v != prev;
		prev = v;
		rep.reads++;
		if (idx == 2 && rep.reads % 64 == 0) {
			/* one reader also waits for the next version now and then */
			uint64_t now;
			rc = shmchan_state_wait(ch, v, T_MS(1000), &now);
			CHECK_MSG(rc == 0 || rc == -ETIMEDOUT, "state_wait: %s", shmchan_strerror(rc));
			CHECK(rc != 0 || now > v);
		}
	}
	rep.last = prev;
	CHECK(write(report_fd, &rep, sizeof(rep)) == (ssize_t)sizeof(rep));
	shmchan_close(ch);
	t_peer_exit(0);
}

static void hammer(void)
{
	shmchan_channel *ch = st_create("hammer");
	const int readers = 3;
	const int64_t until = t_now_ns() + T_MS(1500);
	int ready[2], reports[2];
	uint64_t v, ver = 0, reads = 0;
	pid_t pids[3], wpid;

	t_pipe(ready);
	t_pipe(reports);
	for (int i = 0; i < readers; i++) {
		pids[i] = t_fork();
		if (pids[i] == 0)
			hammer_reader(i, ready[1], reports[1], until);
	}
	for (int i = 0; i < readers; i++)
		CHECK_RC(t_get_u64(ready[0], &v, 5000), 0);
	/* the writer, in a process of its own, publishes as fast as it can until the readers stop */
	wpid = t_fork();
	if (wpid == 0) {
		shmchan_channel *c = st_open("hammer");
		shmchan_writer *w;
		uint64_t n = 0;
		CHECK_RC(shmchan_writer_attach(c, &w), 0);
		while (t_now_ns() < until + T_MS(100))
			publish(w, ++n);
		t_put_u64(ready[1], n);
		shmchan_writer_close(w);
		shmchan_close(c);
		t_peer_exit(0);
	}
	CHECK_CHILD(wpid, 30000, 0);
	CHECK_RC(t_get_u64(ready[0], &ver, 1000), 0);
	CHECK(shmchan_state_version(ch) == ver);
	read_is(ch, ver);
	printf("  %llu versions published\n", (unsigned long long)ver);
	for (int i = 0; i < readers; i++) {
		struct hammer_report rep;
		struct pollfd p = {reports[0], POLLIN, 0};
		CHECK_CHILD(pids[i], 30000, 0);
		CHECK(poll(&p, 1, 5000) == 1);
		CHECK(read(reports[0], &rep, sizeof(rep)) == (ssize_t)sizeof(rep));
		printf("    reader: %llu reads, %llu distinct versions, none torn, last %llu, %llu -EBUSY\n",
		       (unsigned long long)rep.reads, (unsigned long long)rep.versions, (unsigned long long)rep.last,
		       (unsigned long long)rep.busy);
		CHECK(rep.reads > 0 && rep.last <= ver);
		reads += rep.reads;
	}
	CHECK(ver > 1000 && reads > 1000);
	close(ready[0]);
	close(ready[1]);
	close(reports[0]);
	close(reports[1]);
	st_remove(ch);
}

int main(void)
{
	int fails = 0;

	t_init();
	fails += t_case("geometry_and_kind", geometry_and_kind, 10);
	fails += t_case("versions_and_values", versions_and_values, 10);
	fails += t_case("short_buffer", short_buffer, 10);
	fails += t_case("wait_for_versions", wait_for_versions, 10);
	fails += t_case("wait_writer_killed", wait_writer_killed, 10);
	fails += t_case("one_writer_only", one_writer_only, 10);
	fails += t_case("hammer_never_torn", hammer, 40);
	return t_done(fails);
}
