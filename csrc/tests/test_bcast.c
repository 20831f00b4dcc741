/* SPDX-License-Identifier: MIT */
/* BROADCAST channels: geometry, block and overwrite policies in one process, reader death, and multi-process stress and join/leave churn with payloads whose every byte is derived from the position. */
#include <pthread.h>
#include <stdatomic.h>

#include "testutil.h"

#include "layout.h"

#define BLOCK SHMCHAN_POLICY_BLOCK
#define OVERWRITE SHMCHAN_POLICY_OVERWRITE
#define HDR 16u /* every payload starts with its position and its length (u64 each) */
#define MAX_SLOT 4096u

/* ---- payloads: every byte derived from the position ---- */

static uint64_t mix(uint64_t x)
{
	x += 0x9E3779B97F4A7C15ull;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
	return x ^ (x >> 31);
}

static uint64_t len_of(uint64_t pos, uint64_t slot)
{
	return HDR + mix(pos ^ 0x5555) % (slot - HDR + 1); /* HDR .. slot */
}

static uint8_t pattern(uint64_t pos, uint64_t i)
{
	return (uint8_t)((mix(pos) >> ((i & 7) * 8)) ^ (i >> 3));
}

/* Writes message `pos` into dst; returns its length. */
static uint64_t fill(uint8_t *dst, uint64_t pos, uint64_t slot)
{
	const uint64_t n = len_of(pos, slot);

	memcpy(dst, &pos, 8);
	memcpy(dst + 8, &n, 8);
	for (uint64_t i = HDR; i < n; i++)
		dst[i] = pattern(pos, i);
	return n;
}

/* 1 when data[0, len) is exactly message pos, else 0 (torn, mixed or misplaced). */
static int intact(const uint8_t *data, uint64_t len, uint64_t pos, uint64_t slot)
{
	uint64_t p, n;

	if (len < HDR || len != len_of(pos, slot))
		return 0;
	memcpy(&p, data, 8);
	memcpy(&n, data + 8, 8);
	if (p != pos || n != len)
		return 0;
	for (uint64_t i = HDR; i < len; i++)
		if (data[i] != pattern(pos, i))
			return 0;
	return 1;
}

/* The position a payload claims (its first 8 bytes). */
static uint64_t pos_in(const uint8_t *data, uint64_t len)
{
	uint64_t p = UINT64_MAX;
	if (len >= 8)
		memcpy(&p, data, 8);
	return p;
}

/* Sends message pos: through shmchan_send, or written in place between reserve and commit. */
static int send_pos(shmchan_writer *w, uint64_t pos, uint64_t slot, int64_t timeout_ns)
{
	uint8_t buf[MAX_SLOT];
	void *data;
	int rc;

	if (pos % 2 == 0) {
		uint64_t n = fill(buf, pos, slot);
		return shmchan_send(w, (const char *)buf, n, timeout_ns);
	}
	rc = shmchan_reserve(w, slot, timeout_ns, &data, NULL);
	if (rc)
		return rc;
	return shmchan_commit(w, fill(data, pos, slot));
}

/* Receives one message and checks that it is exactly message `pos`. */
static void recv_pos(shmchan_reader *r, uint64_t pos, uint64_t slot)
{
	uint8_t buf[MAX_SLOT];
	uint64_t len;

	CHECK_RC(shmchan_recv(r, buf, sizeof(buf), &len, T_MS(5000)), 0);
	CHECK_MSG(intact(buf, len, pos, slot), "wanted message %llu, got %llu bytes claiming position %llu",
		  (unsigned long long)pos, (unsigned long long)len, (unsigned long long)pos_in(buf, len));
}

/* ---- channels ---- */

static struct shmchan_config bc_config(uint64_t slot, uint32_t cap, uint32_t readers, uint32_t policy)
{
	struct shmchan_config cfg = t_config(slot, cap);
	cfg.kind = SHMCHAN_KIND_BROADCAST;
	cfg.max_readers = readers;
	cfg.policy = policy;
	cfg.slot_align = 64;
	return cfg;
}

static shmchan_channel *bc_create(const char *tag, uint64_t slot, uint32_t cap, uint32_t readers, uint32_t policy)
{
	struct shmchan_config cfg = bc_config(slot, cap, readers, policy);
	shmchan_channel *ch;

	CHECK_RC(shmchan_create(t_name(tag), &cfg, &ch, NULL), 0);
	return ch;
}

static shmchan_channel *bc_open(const char *tag)
{
	shmchan_channel *ch;

	CHECK_RC(shmchan_open(t_name(tag), T_MS(2000), &ch, NULL), 0);
	return ch;
}

/* A reader on a handle of its own (a handle has at most one reader). */
struct rd {
	shmchan_channel *ch;
	shmchan_reader *r;
};

static struct rd rd_attach(const char *tag, uint32_t flags)
{
	struct rd x;

	x.ch = bc_open(tag);
	CHECK_RC(shmchan_reader_attach_ex(x.ch, flags, &x.r), 0);
	return x;
}

static void rd_close(struct rd *x)
{
	shmchan_reader_close(x->r);
	shmchan_close(x->ch);
	x->r = NULL;
	x->ch = NULL;
}

static void bc_remove(shmchan_channel *ch)
{
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

/* The reader place a process holds (-1 when none is attached with that pid). */
static int place_of(const shmchan_channel *ch, pid_t pid, struct shmchan_place_info *out)
{
	struct shmchan_place_info places[16];
	int n = shmchan_reader_places(ch, places, 16);

	CHECK(n > 0);
	for (int i = 0; i < n && i < 16; i++) {
		if (places[i].state == 1 && places[i].pid == (uint32_t)pid) {
			if (out)
				*out = places[i];
			return i;
		}
	}
	return -1;
}

/* ---- pipes carrying a struct ---- */

struct report {
	int32_t idx, pad;
	uint64_t received;  /* messages delivered intact and released without -ESTALE */
	uint64_t lost;      /* msg.lost + -ESTALE releases + what recv skipped, as the reader counted them */
	uint64_t stale;     /* releases that said -ESTALE */
	uint64_t torn;      /* copies that were in fact torn, each caught by shmchan_check */
	uint64_t next;      /* one past the last position seen */
	uint64_t lib_lost;  /* shmchan_reader_lost */
	uint64_t place_lost; /* the reader place's statistic */
	uint64_t sessions;  /* churn: attach/close cycles */
};

static void put_report(int fd, const struct report *rep)
{
	CHECK(write(fd, rep, sizeof(*rep)) == (ssize_t)sizeof(*rep));
}

static int get_report(int fd, struct report *rep, long timeout_ms)
{
	struct pollfd p = {fd, POLLIN, 0};
	ssize_t n;
	int r;

	do
		r = poll(&p, 1, (int)timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return -ETIMEDOUT;
	do
		n = read(fd, rep, sizeof(*rep));
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)sizeof(*rep) ? 0 : -EPIPE;
}

/* ======== geometry and validation ======== */

static void geometry_refused(void)
{
	const char *name = t_name("geom");
	struct shmchan_config ok = bc_config(64, 4, 2, BLOCK), c;
	shmchan_channel *ch;
	uint64_t size;

	c = ok;
	c.capacity = 1;
	CHECK_RC(shmchan_create(name, &c, &ch, NULL), -EINVAL);
	CHECK_RC(shmchan_layout_size(&c, &size), -EINVAL);
	c = ok;
	c.max_readers = 0;
	CHECK_RC(shmchan_create(name, &c, &ch, NULL), -EINVAL);
	c = ok;
	c.max_readers = SHMCHAN_MAX_READERS + 1;
	CHECK_RC(shmchan_create(name, &c, &ch, NULL), -EINVAL);
	c = ok;
	c.policy = 2;
	CHECK_RC(shmchan_create(name, &c, &ch, NULL), -EINVAL);
	c = ok;
	c.kind = 4;
	CHECK_RC(shmchan_create(name, &c, &ch, NULL), -EINVAL);
	c = ok;
	c.capacity = 6; /* not a power of two */
	CHECK_RC(shmchan_create(name, &c, &ch, NULL), -EINVAL);
	/* the other kinds take neither readers nor a policy */
	c = t_config(64, 4);
	c.max_readers = 2;
	CHECK_RC(shmchan_create(name, &c, &ch, NULL), -EINVAL);
	c = t_config(64, 4);
	c.policy = OVERWRITE;
	CHECK_RC(shmchan_create(name, &c, &ch, NULL), -EINVAL);
	CHECK_MSG(!t_exists("/dev/shm/shmchan.ctest-geom"), "a refused create left an object");
	/* the limits themselves are fine: capacity 2, one reader, SHMCHAN_MAX_READERS readers */
	c = ok;
	c.capacity = 2;
	c.max_readers = 1;
	CHECK_RC(shmchan_layout_size(&c, &size), 0);
	c.max_readers = SHMCHAN_MAX_READERS;
	CHECK_RC(shmchan_layout_size(&c, &size), 0);
	CHECK_RC(shmchan_create(name, &c, &ch, NULL), 0);
	bc_remove(ch);
}

static void info_reports_kind(void)
{
	shmchan_channel *ch = bc_create("info", 100, 8, 3, OVERWRITE), *o;
	struct shmchan_place_info places[8];
	struct shmchan_info info;
	uint64_t size;
	struct shmchan_config cfg = bc_config(100, 8, 3, OVERWRITE);

	o = bc_open("info");
	CHECK_RC(shmchan_info(o, &info), 0);
	CHECK(info.kind == SHMCHAN_KIND_BROADCAST && info.max_readers == 3 && info.policy == OVERWRITE);
	CHECK(info.capacity == 8 && info.slot_size == 100 && info.is_creator == 0);
	CHECK_RC(shmchan_kind(o), SHMCHAN_KIND_BROADCAST);
	CHECK_RC(shmchan_layout_size(&cfg, &size), 0);
	CHECK(info.total_size == size);
	/* three free places, none alive */
	CHECK_RC(shmchan_reader_places(o, places, 8), 3);
	for (int i = 0; i < 3; i++)
		CHECK(places[i].index == (uint32_t)i && places[i].state == 0 && places[i].alive == 0);
	shmchan_close(o);
	CHECK_RC(shmchan_info(ch, &info), 0);
	CHECK(info.is_creator == 1 && info.kind == SHMCHAN_KIND_BROADCAST && info.policy == OVERWRITE);
	bc_remove(ch);

	ch = bc_create("info2", 100, 8, 1, BLOCK);
	CHECK_RC(shmchan_info(ch, &info), 0);
	CHECK(info.kind == SHMCHAN_KIND_BROADCAST && info.max_readers == 1 && info.policy == BLOCK);
	bc_remove(ch);
}

/* ======== block policy, one process ======== */

#define SLOT 256u

/* Two readers on their own handles each see every message in order, over many wraps. */
static void block_every_reader_every_message(void)
{
	shmchan_channel *ch = bc_create("every", SLOT, 4, 4, BLOCK);
	shmchan_writer *w;
	shmchan_reader *extra;
	struct rd a = rd_attach("every", SHMCHAN_START_LATEST), b = rd_attach("every", SHMCHAN_START_OLDEST);
	uint64_t ga = 0, gb = 0;

	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	/* one reader per handle */
	CHECK_RC(shmchan_reader_attach(a.ch, &extra), -EBUSY);
	for (uint64_t sent = 0; sent < 1000;) {
		/* the writer runs ahead as far as the slower reader allows */
		while (sent - (ga < gb ? ga : gb) < 4)
			CHECK_RC(send_pos(w, sent++, SLOT, 0), 0);
		CHECK_RC(send_pos(w, sent, SLOT, 0), -EAGAIN);
		/* a reads everything there is, b one message */
		while (ga < sent)
			recv_pos(a.r, ga++, SLOT);
		recv_pos(b.r, gb++, SLOT);
	}
	while (gb < 1000)
		recv_pos(b.r, gb++, SLOT);
	shmchan_writer_close(w);
	CHECK_RC(shmchan_recv(a.r, NULL, 0, &ga, T_MS(1000)), -SHMCHAN_EENDED);
	CHECK_RC(shmchan_recv(b.r, NULL, 0, &gb, 0), -SHMCHAN_EENDED);
	rd_close(&a);
	rd_close(&b);
	bc_remove(ch);
}

/* The writer gets -EAGAIN / -ETIMEDOUT exactly while the slowest reader is `capacity` behind. */
static void block_writer_waits_for_slowest(void)
{
	const uint32_t cap = 4;
	shmchan_channel *ch = bc_create("slowest", SLOT, cap, 2, BLOCK);
	shmchan_writer *w;
	struct rd a = rd_attach("slowest", 0), b = rd_attach("slowest", 0);
	struct shmchan_msg m;
	struct shmchan_stats st;
	int64_t t0;

	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	for (uint64_t p = 0; p < cap; p++)
		CHECK_RC(send_pos(w, p, SLOT, 0), 0);
	for (uint64_t p = 0; p < cap; p++)
		recv_pos(a.r, p, SLOT);
	/* b has read nothing: the ring is full for it */
	CHECK_RC(send_pos(w, cap, SLOT, 0), -EAGAIN);
	t0 = t_now_ns();
	CHECK_RC(send_pos(w, cap, SLOT, T_MS(60)), -ETIMEDOUT);
	CHECK_MSG(t_now_ns() - t0 >= T_MS(55), "gave up after %.1f ms", t_ms(t_now_ns() - t0));
	/* a peeked message still holds its slot */
	CHECK_RC(shmchan_peek(b.r, 0, &m), 0);
	CHECK(m.pos == 0 && m.lost == 0 && intact(m.data, m.len, 0, SLOT));
	CHECK_RC(shmchan_check(b.r, 0), 0);
	CHECK_RC(send_pos(w, cap, SLOT, 0), -EAGAIN);
	CHECK_RC(shmchan_stats(ch, &st), 0);
	CHECK(st.head == cap && st.tail == 0 && st.full_waits >= 1 && st.reader_state == 1);
	/* released: exactly one more fits */
	CHECK_RC(shmchan_release(b.r, 0), 0);
	CHECK_RC(shmchan_check(b.r, 0), -EINVAL);
	CHECK_RC(shmchan_release(b.r, 0), -EINVAL);
	CHECK_RC(send_pos(w, cap, SLOT, 0), 0);
	CHECK_RC(send_pos(w, cap + 1, SLOT, 0), -EAGAIN);
	/* b holding all of its slots: pinned, not empty */
	for (uint64_t p = 1; p <= cap; p++) {
		CHECK_RC(shmchan_peek(b.r, 0, &m), 0);
		CHECK(m.pos == p && intact(m.data, m.len, p, SLOT));
	}
	CHECK_RC(shmchan_peek(b.r, 0, &m), -SHMCHAN_EPINNED);
	CHECK(shmchan_reader_outstanding(b.r) == cap);
	/* released out of order: the slots return in stream order */
	CHECK_RC(shmchan_release(b.r, 3), 0);
	CHECK_RC(send_pos(w, cap + 1, SLOT, 0), -EAGAIN);
	CHECK_RC(shmchan_release(b.r, 1), 0);
	CHECK_RC(send_pos(w, cap + 1, SLOT, 0), 0);
	CHECK_RC(shmchan_release(b.r, 2), 0);
	CHECK_RC(shmchan_release(b.r, 4), 0);
	/* a is now the slowest: it took 0 .. cap - 1, so the writer may go up to position 2 * cap - 1 */
	CHECK_RC(send_pos(w, cap + 2, SLOT, 0), 0);
	CHECK_RC(send_pos(w, cap + 3, SLOT, 0), 0);
	CHECK_RC(send_pos(w, cap + 4, SLOT, 0), -EAGAIN);
	recv_pos(a.r, cap, SLOT);
	CHECK_RC(send_pos(w, cap + 4, SLOT, 0), 0);
	/* a closed reader holds nothing back */
	rd_close(&a);
	for (uint64_t p = 5; p < cap + 5; p++)
		recv_pos(b.r, p, SLOT);
	for (uint64_t p = cap + 5; p < 40; p++) {
		CHECK_RC(send_pos(w, p, SLOT, 0), 0);
		recv_pos(b.r, p, SLOT);
	}
	CHECK_RC(shmchan_stats(ch, &st), 0);
	CHECK(st.head == 40 && st.tail == 40);
	rd_close(&b);
	shmchan_writer_close(w);
	bc_remove(ch);
}

/* A reader on the writer's own handle is alive too: the writer must wait for it like for any other. */
static void block_reader_on_writer_handle(void)
{
	const uint32_t cap = 4;
	shmchan_channel *ch = bc_create("ownhandle", SLOT, cap, 2, BLOCK);
	shmchan_writer *w;
	shmchan_reader *r;
	int64_t t0;

	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	CHECK_RC(shmchan_reader_attach(ch, &r), 0);
	for (uint64_t p = 0; p < cap; p++)
		CHECK_RC(send_pos(w, p, SLOT, 0), 0);
	CHECK_RC(send_pos(w, cap, SLOT, 0), -EAGAIN);
	/* a wait long enough for the spin, a look for dead readers, and a liveness slice */
	t0 = t_now_ns();
	CHECK_RC(send_pos(w, cap, SLOT, T_MS(250)), -ETIMEDOUT);
	CHECK(t_now_ns() - t0 >= T_MS(240));
	CHECK_RC(send_pos(w, cap, SLOT, 0), -EAGAIN);
	for (uint64_t p = 0; p < cap; p++)
		recv_pos(r, p, SLOT);
	CHECK_RC(send_pos(w, cap, SLOT, 0), 0);
	recv_pos(r, cap, SLOT);
	shmchan_reader_close(r);
	shmchan_writer_close(w);
	bc_remove(ch);
}

/* START_LATEST begins at the newest message already sent, START_OLDEST at the oldest one kept. */
static void start_latest_and_oldest(void)
{
	const uint32_t cap = 4;
	shmchan_channel *ch = bc_create("start", SLOT, cap, 4, BLOCK);
	shmchan_writer *w;
	struct rd a, b, c;
	struct shmchan_msg m;
	uint64_t first;

	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	/* nothing sent yet: both start at the first message */
	a = rd_attach("start", SHMCHAN_START_LATEST);
	b = rd_attach("start", SHMCHAN_START_OLDEST);
	CHECK(shmchan_reader_position(a.r) == 0 && shmchan_reader_position(b.r) == 0);
	CHECK_RC(shmchan_peek(a.r, 0, &m), -EAGAIN);
	CHECK_RC(send_pos(w, 0, SLOT, 0), 0);
	recv_pos(a.r, 0, SLOT);
	recv_pos(b.r, 0, SLOT);
	rd_close(&a);
	rd_close(&b);
	/* with no reader the writer never waits: 10 messages in a 4-slot ring */
	for (uint64_t p = 1; p <= 10; p++)
		CHECK_RC(send_pos(w, p, SLOT, 0), 0);
	a = rd_attach("start", SHMCHAN_START_LATEST);
	b = rd_attach("start", SHMCHAN_START_OLDEST);
	CHECK(shmchan_reader_position(a.r) == 10);
	/* the oldest of the last cap, or later: the writer may already have been free to overwrite it */
	first = shmchan_reader_position(b.r);
	CHECK_MSG(first >= 11 - cap && first <= 10, "OLDEST starts at %llu", (unsigned long long)first);
	recv_pos(a.r, 10, SLOT);
	CHECK_RC(shmchan_peek(a.r, 0, &m), -EAGAIN);
	for (uint64_t p = first; p <= 10; p++)
		recv_pos(b.r, p, SLOT);
	/* b is at the head, a too: the writer has room for cap more */
	for (uint64_t p = 11; p < 11 + cap; p++)
		CHECK_RC(send_pos(w, p, SLOT, 0), 0);
	CHECK_RC(send_pos(w, 11 + cap, SLOT, 0), -EAGAIN);
	/* a newcomer while the ring is full: OLDEST takes the oldest still needed, LATEST the newest */
	c = rd_attach("start", SHMCHAN_START_OLDEST);
	CHECK(shmchan_reader_position(c.r) == 11);
	recv_pos(c.r, 11, SLOT);
	rd_close(&c);
	c = rd_attach("start", SHMCHAN_START_LATEST);
	recv_pos(c.r, 10 + cap, SLOT);
	rd_close(&c);
	CHECK_RC(shmchan_reader_attach_ex(ch, 2, &c.r), -EINVAL);
	rd_close(&a);
	rd_close(&b);
	shmchan_writer_close(w);
	bc_remove(ch);
}

/* Every place taken: -SHMCHAN_ENOREADERS; a closed reader's place and a dead reader's place are reused. */
static void places_taken_and_reused(void)
{
	shmchan_channel *ch = bc_create("places", SLOT, 4, 2, BLOCK);
	struct shmchan_place_info pl[2], mine;
	struct rd a, b;
	shmchan_channel *c = bc_open("places");
	shmchan_reader *r;
	int fds[2];
	uint64_t v;
	pid_t pid;

	/* a reader in another process takes a place, then dies without closing */
	t_pipe(fds);
	pid = t_fork();
	if (pid == 0) {
		struct rd k = rd_attach("places", 0);
		(void)k;
		t_put_u64(fds[1], 1);
		pause();
		_exit(1);
	}
	CHECK_RC(t_get_u64(fds[0], &v, 5000), 0);
	a = rd_attach("places", 0);
	CHECK_RC(shmchan_reader_attach(c, &r), -SHMCHAN_ENOREADERS);
	CHECK_RC(shmchan_reader_places(ch, pl, 2), 2);
	CHECK(pl[0].state == 1 && pl[1].state == 1 && pl[0].alive == 1 && pl[1].alive == 1);
	CHECK(place_of(ch, pid, NULL) >= 0 && place_of(ch, getpid(), NULL) >= 0);
	kill(pid, SIGKILL);
	CHECK_CHILD(pid, 5000, 128 + SIGKILL);
	close(fds[0]);
	close(fds[1]);
	/* its place is attached still, but no longer alive, and the next reader takes it */
	CHECK_RC(shmchan_reader_places(ch, pl, 2), 2);
	CHECK(pl[0].alive + pl[1].alive == 1);
	b = rd_attach("places", 0);
	CHECK_RC(shmchan_reader_attach(c, &r), -SHMCHAN_ENOREADERS);
	CHECK_RC(shmchan_reader_places(ch, pl, 2), 2);
	CHECK(pl[0].alive == 1 && pl[1].alive == 1 && pl[0].pid == (uint32_t)getpid() && pl[1].pid == (uint32_t)getpid());
	/* a closed reader's place is free at once */
	rd_close(&a);
	CHECK_RC(shmchan_reader_places(ch, pl, 2), 2);
	CHECK(pl[0].state + pl[1].state == 1 + 2); /* one attached, one closed */
	CHECK_RC(shmchan_reader_attach(c, &r), 0);
	CHECK(place_of(ch, getpid(), &mine) >= 0 && mine.cursor == 0);
	shmchan_reader_close(r);
	shmchan_close(c);
	rd_close(&b);
	bc_remove(ch);
}

/*
 * The joiner's half of the join protocol, with a writer scan faked through a raw mapping: while
 * scan_seq is odd (a scan is running, which may have missed the new place) the joiner waits, then
 * starts no earlier than the floor that scan published ((J4) pairs with (J3)). A scan left odd by a
 * writer that is gone holds a joiner up only briefly, and the next writer sees that joiner.
 */
static void join_waits_for_running_scan(void)
{
	const uint32_t cap = 8;
	shmchan_channel *ch = bc_create("joinscan", SLOT, cap, 2, BLOCK);
	struct t_map m = t_map_object(t_name("joinscan"));
	shmchan_writer *w;
	int res[2], go[2];
	uint64_t s0, v;
	int64_t t0;
	pid_t a, b;

	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	for (uint64_t p = 0; p < 20; p++)
		CHECK_RC(send_pos(w, p, SLOT, 0), 0);
	s0 = t_get64(&m, SHMCHAN_OFF_SCAN_SEQ);
	CHECK(s0 % 2 == 0 && t_get64(&m, SHMCHAN_OFF_FLOOR) <= 20);
	t_put64(&m, SHMCHAN_OFF_SCAN_SEQ, s0 + 1);
	t_pipe(res);
	a = t_fork();
	if (a == 0) {
		struct rd x = rd_attach("joinscan", SHMCHAN_START_LATEST);
		t_put_u64(res[1], shmchan_reader_position(x.r));
		rd_close(&x);
		t_peer_exit(0);
	}
	/* the writer lives: the joiner waits for the scan, however long it takes */
	CHECK_RC(t_get_u64(res[0], &v, 300), -ETIMEDOUT);
	/* the scan ends: it found no reader, so its floor is the head */
	t_put64(&m, SHMCHAN_OFF_FLOOR, 20);
	t_put64(&m, SHMCHAN_OFF_SCAN_SEQ, s0 + 2);
	CHECK_RC(t_get_u64(res[0], &v, 5000), 0);
	CHECK_MSG(v == 20, "the joiner starts at %llu, not at the floor 20", (unsigned long long)v);
	CHECK_CHILD(a, 5000, 0);

	/* a writer that is gone left a scan running: the joiner goes on after a short look, from the
	   floor that writer left (the next writer builds on it), not from head - 1 */
	shmchan_writer_close(w);
	t_put64(&m, SHMCHAN_OFF_SCAN_SEQ, s0 + 3);
	t_pipe(go);
	t0 = t_now_ns();
	b = t_fork();
	if (b == 0) {
		struct rd x = rd_attach("joinscan", SHMCHAN_START_LATEST);
		uint64_t p = shmchan_reader_position(x.r), g;
		t_put_u64(res[1], p);
		CHECK_RC(t_get_u64(go[0], &g, 5000), 0);
		for (; p <= 20 + cap; p++)
			recv_pos(x.r, p, SLOT);
		rd_close(&x);
		t_peer_exit(0);
	}
	CHECK_RC(t_get_u64(res[0], &v, 5000), 0);
	printf("  a joiner behind a dead writer's scan waited %.1f ms\n", t_ms(t_now_ns() - t0));
	CHECK_MSG(v == 20 && t_now_ns() - t0 < T_MS(2000), "the joiner starts at %llu", (unsigned long long)v);
	/* the next writer finds scan_seq odd, starts from the next even value, and waits for the joiner */
	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	CHECK(t_get64(&m, SHMCHAN_OFF_SCAN_SEQ) % 2 == 0 && t_get64(&m, SHMCHAN_OFF_FLOOR) == 20);
	for (uint64_t p = 20; p < 20 + cap; p++)
		CHECK_RC(send_pos(w, p, SLOT, 0), 0);
	CHECK_RC(send_pos(w, 20 + cap, SLOT, 0), -EAGAIN);
	t_put_u64(go[1], 1);
	CHECK_RC(send_pos(w, 20 + cap, SLOT, T_MS(5000)), 0);
	CHECK_CHILD(b, 5000, 0);
	shmchan_writer_close(w);
	t_unmap(&m);
	close(res[0]);
	close(res[1]);
	close(go[0]);
	close(go[1]);
	bc_remove(ch);
}

/* ======== block policy: a reader killed while the writer waits for it ======== */

static void block_killed_reader_frees_writer(void)
{
	const uint32_t cap = 8;
	const uint64_t total = 2000;
	shmchan_channel *ch = bc_create("bkill", SLOT, cap, 4, BLOCK);
	shmchan_writer *w;
	struct shmchan_place_info pi;
	int ready[2], death[2];
	pid_t killed, readers[2];
	uint64_t v, died;
	int64_t t0, t1;

	t_pipe(ready);
	t_pipe(death);
	/* the victim attaches, never reads, and kills itself once the writer waits for it */
	killed = t_fork();
	if (killed == 0) {
		struct rd k = rd_attach("bkill", 0);
		(void)k;
		t_put_u64(ready[1], 1);
		t_sleep_ms(400);
		t_put_u64(death[1], (uint64_t)t_now_ns());
		raise(SIGKILL);
		_exit(1);
	}
	for (int i = 0; i < 2; i++) {
		readers[i] = t_fork();
		if (readers[i] == 0) {
			struct rd x = rd_attach("bkill", 0);
			t_put_u64(ready[1], 1);
			for (uint64_t p = 0; p < total; p++)
				recv_pos(x.r, p, SLOT);
			CHECK_RC(shmchan_recv(x.r, NULL, 0, &v, T_MS(5000)), -SHMCHAN_EENDED);
			rd_close(&x);
			t_peer_exit(0);
		}
	}
	for (int i = 0; i < 3; i++)
		CHECK_RC(t_get_u64(ready[0], &v, 5000), 0);
	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	for (uint64_t p = 0; p < cap; p++)
		CHECK_RC(send_pos(w, p, SLOT, 0), 0);
	/* full for the victim: this send waits, forever if need be, until it is found dead */
	t0 = t_now_ns();
	CHECK_RC(send_pos(w, cap, SLOT, -1), 0);
	t1 = t_now_ns();
	CHECK_RC(t_get_u64(death[0], &died, 5000), 0);
	printf("  the writer waited %.1f ms, and went on %.1f ms after the reader's SIGKILL\n", t_ms(t1 - t0),
	       t_ms(t1 - (int64_t)died));
	CHECK_MSG(t1 > (int64_t)died, "the writer went on before the reader died");
	CHECK_MSG(t1 - (int64_t)died < T_MS(2000), "took %.1f ms", t_ms(t1 - (int64_t)died));
	CHECK_CHILD(killed, 5000, 128 + SIGKILL);
	/* the dead reader's place: attached, not alive, its cursor still at 0 */
	CHECK(place_of(ch, killed, &pi) >= 0 && pi.alive == 0 && pi.cursor == 0);
	for (uint64_t p = cap + 1; p < total; p++)
		CHECK_RC(send_pos(w, p, SLOT, T_MS(10000)), 0);
	shmchan_writer_close(w);
	for (int i = 0; i < 2; i++)
		CHECK_CHILD(readers[i], 20000, 0);
	bc_remove(ch);
}

/* ======== overwrite policy, one process ======== */

/* Reads whatever is there (timeout 0) with peek; checks order, content and the lost counts. */
static void drain_overwrite(shmchan_reader *r, uint64_t *next, uint64_t *received, uint64_t *lost, uint64_t slot)
{
	struct shmchan_msg m;
	int rc;

	while ((rc = shmchan_peek(r, 0, &m)) == 0) {
		CHECK_MSG(m.pos == *next + m.lost, "position %llu after %llu with %u lost", (unsigned long long)m.pos,
			  (unsigned long long)*next, m.lost);
		CHECK(intact(m.data, m.len, m.pos, slot));
		*lost += m.lost;
		*next = m.pos + 1;
		CHECK_RC(shmchan_release(r, m.pos), 0); /* nobody writes meanwhile: never stale */
		*received += 1;
	}
	CHECK_RC(rc, -EAGAIN);
}

static void overwrite_lapped_reader_counts_lost(void)
{
	const uint32_t cap = 4;
	shmchan_channel *ch = bc_create("lapped", SLOT, cap, 2, OVERWRITE);
	shmchan_writer *w;
	struct rd a = rd_attach("lapped", 0);
	struct shmchan_msg m;
	struct shmchan_place_info pi;
	uint64_t sent = 0, next = 0, received = 0, lost = 0, rnd = 42, len;
	uint8_t buf[SLOT];

	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	/* the writer never waits: 10 messages into 4 slots, with timeout 0 */
	for (; sent < 10; sent++)
		CHECK_RC(send_pos(w, sent, SLOT, 0), 0);
	CHECK_RC(shmchan_peek(a.r, 0, &m), 0);
	CHECK_MSG(m.lost > 0 && m.pos == m.lost && m.pos >= 10 - cap, "pos %llu lost %u", (unsigned long long)m.pos,
		  m.lost);
	CHECK(intact(m.data, m.len, m.pos, SLOT));
	CHECK_RC(shmchan_release(a.r, m.pos), 0);
	lost = m.lost;
	next = m.pos + 1;
	received = 1;
	drain_overwrite(a.r, &next, &received, &lost, SLOT);
	CHECK(next == 10 && received + lost == 10 && shmchan_reader_lost(a.r) == lost);
	/* bursts of every size against reads of every size, through peek and recv */
	for (int round = 0; round < 3000; round++) {
		rnd = rnd * 6364136223846793005ull + 1442695040888963407ull;
		uint64_t burst = (rnd >> 33) % (3 * cap), reads = (rnd >> 45) % (cap + 1);
		for (uint64_t i = 0; i < burst; i++, sent++)
			CHECK_RC(send_pos(w, sent, SLOT, 0), 0);
		for (uint64_t i = 0; i < reads; i++) {
			uint64_t before = shmchan_reader_lost(a.r), p;
			int rc = shmchan_recv(a.r, buf, sizeof(buf), &len, 0);
			if (rc == -EAGAIN)
				break;
			CHECK_RC(rc, 0);
			p = pos_in(buf, len);
			CHECK_MSG(intact(buf, len, p, SLOT) && p == next + shmchan_reader_lost(a.r) - before,
				  "recv gave %llu after %llu", (unsigned long long)p, (unsigned long long)next);
			lost += shmchan_reader_lost(a.r) - before;
			next = p + 1;
			received++;
		}
		if (round % 7 == 0)
			drain_overwrite(a.r, &next, &received, &lost, SLOT);
	}
	drain_overwrite(a.r, &next, &received, &lost, SLOT);
	shmchan_writer_close(w);
	CHECK_RC(shmchan_peek(a.r, 0, &m), -SHMCHAN_EENDED);
	printf("  %llu sent, %llu received, %llu lost\n", (unsigned long long)sent, (unsigned long long)received,
	       (unsigned long long)lost);
	CHECK_MSG(received + lost == sent && next == sent, "received %llu + lost %llu != sent %llu",
		  (unsigned long long)received, (unsigned long long)lost, (unsigned long long)sent);
	CHECK(lost > 0 && shmchan_reader_lost(a.r) == lost);
	CHECK(place_of(a.ch, getpid(), &pi) >= 0 && pi.lost == lost && pi.messages == received);
	rd_close(&a);
	bc_remove(ch);
}

/* A held message whose slot the writer reused: shmchan_check and shmchan_release say -ESTALE. */
static void overwrite_held_message_goes_stale(void)
{
	const uint32_t cap = 4;
	shmchan_channel *ch = bc_create("stale", SLOT, cap, 2, OVERWRITE);
	shmchan_writer *w;
	struct rd a = rd_attach("stale", 0);
	struct shmchan_msg m, m2;
	uint64_t sent = 0, lost;

	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	/* held while cap - 1 more are written: intact */
	CHECK_RC(send_pos(w, sent++, SLOT, 0), 0);
	CHECK_RC(shmchan_peek(a.r, 0, &m), 0);
	CHECK(m.pos == 0 && m.lost == 0);
	for (uint32_t i = 0; i < cap - 1; i++)
		CHECK_RC(send_pos(w, sent++, SLOT, 0), 0);
	CHECK_RC(shmchan_check(a.r, 0), 0);
	CHECK(intact(m.data, m.len, 0, SLOT));
	CHECK_RC(shmchan_release(a.r, 0), 0);
	CHECK_RC(shmchan_check(a.r, 0), -EINVAL);
	CHECK_RC(shmchan_release(a.r, 0), -EINVAL);
	/* held while its slot is written again: stale, and counted lost */
	CHECK_RC(shmchan_peek(a.r, 0, &m), 0);
	CHECK(m.pos == 1 && m.lost == 0);
	CHECK_RC(send_pos(w, sent++, SLOT, 0), 0); /* position 4 into slot 0 */
	CHECK_RC(shmchan_check(a.r, 1), 0);
	CHECK_RC(send_pos(w, sent++, SLOT, 0), 0); /* position 5 into slot 1 */
	CHECK_RC(shmchan_check(a.r, 1), -ESTALE);
	CHECK(!intact(m.data, m.len, 1, SLOT)); /* it really holds position 5 now */
	lost = shmchan_reader_lost(a.r);
	CHECK_RC(shmchan_release(a.r, 1), -ESTALE);
	CHECK(shmchan_reader_lost(a.r) == lost + 1);
	CHECK_RC(shmchan_check(a.r, 1), -EINVAL);
	/* positions 2..5 are all still there */
	for (uint64_t p = 2; p < sent; p++)
		recv_pos(a.r, p, SLOT);
	CHECK(shmchan_reader_lost(a.r) == 1);
	/* two held when the writer laps the reader: the next peek skips, both come back -ESTALE */
	CHECK_RC(send_pos(w, sent++, SLOT, 0), 0);
	CHECK_RC(send_pos(w, sent++, SLOT, 0), 0);
	CHECK_RC(shmchan_peek(a.r, 0, &m), 0);
	CHECK_RC(shmchan_peek(a.r, 0, &m2), 0);
	CHECK(m.pos == 6 && m2.pos == 7);
	for (uint32_t i = 0; i < 2 * cap; i++)
		CHECK_RC(send_pos(w, sent++, SLOT, 0), 0);
	CHECK_RC(shmchan_peek(a.r, 0, &m), 0);
	CHECK_MSG(m.lost > 0 && m.pos == 8 + m.lost, "pos %llu lost %u", (unsigned long long)m.pos, m.lost);
	CHECK(intact(m.data, m.len, m.pos, SLOT));
	CHECK_RC(shmchan_check(a.r, 6), -ESTALE);
	CHECK_RC(shmchan_release(a.r, 7), -ESTALE);
	CHECK_RC(shmchan_release(a.r, 6), -ESTALE);
	CHECK_RC(shmchan_release(a.r, m.pos), 0);
	/* lost in all: position 1, the two held ones, and the skipped ones */
	CHECK_MSG(shmchan_reader_lost(a.r) == 1 + 2 + m.lost, "lost %llu, wanted %u",
		  (unsigned long long)shmchan_reader_lost(a.r), 3 + m.lost);
	while (shmchan_reader_position(a.r) < sent)
		recv_pos(a.r, shmchan_reader_position(a.r), SLOT);
	shmchan_writer_close(w);
	rd_close(&a);
	bc_remove(ch);
}

/* Holding every slot is pinned under overwrite too, whether or not the writer moved on. */
static void overwrite_pinned_reader(void)
{
	const uint32_t cap = 4;
	shmchan_channel *ch = bc_create("opinned", SLOT, cap, 1, OVERWRITE);
	shmchan_writer *w;
	struct rd a = rd_attach("opinned", 0);
	struct shmchan_msg m[4], x;
	int rc;

	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	/* every message taken while it is less than cap behind the head */
	for (uint64_t p = 0; p < cap - 1; p++)
		CHECK_RC(send_pos(w, p, SLOT, 0), 0);
	CHECK_RC(shmchan_peek_batch(a.r, m, 4, 0), 3);
	CHECK_RC(send_pos(w, cap - 1, SLOT, 0), 0);
	CHECK_RC(shmchan_peek(a.r, 0, &m[3]), 0);
	for (uint32_t i = 0; i < cap; i++)
		CHECK(m[i].pos == i && m[i].lost == 0 && intact(m[i].data, m[i].len, i, SLOT));
	CHECK_RC(shmchan_peek(a.r, 0, &x), -SHMCHAN_EPINNED);
	/* the writer goes on; the reader still holds all its slots */
	CHECK_RC(send_pos(w, cap, SLOT, 0), 0);
	memset(&x, 0, sizeof(x));
	rc = shmchan_peek(a.r, 0, &x);
	CHECK_MSG(rc == -SHMCHAN_EPINNED, "peek returned %d (%s), message at %p", rc, shmchan_strerror(rc), x.data);
	rc = shmchan_peek_batch(a.r, &x, 1, 0);
	CHECK_MSG(rc == -SHMCHAN_EPINNED, "peek_batch returned %d (%s)", rc, shmchan_strerror(rc));
	/* position 0 was overwritten by position 4; the others are intact */
	CHECK_RC(shmchan_release(a.r, 0), -ESTALE);
	for (uint64_t p = 1; p < cap; p++)
		CHECK_RC(shmchan_release(a.r, p), 0);
	recv_pos(a.r, cap, SLOT);
	CHECK(shmchan_reader_lost(a.r) == 1);
	shmchan_writer_close(w);
	rd_close(&a);
	bc_remove(ch);
}

/* ======== a writer thread and reader threads (the case ThreadSanitizer checks) ======== */

/*
 * Block policy only: its readers never read a slot the writer may be writing, so every payload
 * byte is handed over through an acquire/release pair TSan can check. One reader shares the
 * writer's channel handle, so TSan sees the slots through the same addresses on both sides (the
 * other reader has a mapping of its own). Overwrite readers are seqlock readers whose copies race
 * with the writer by design: they are tested across processes only.
 */
struct thr {
	shmchan_writer *w;
	shmchan_reader *r;
	int64_t until;
	int slow;
	uint64_t count;
	char error[160];
};

/* Sends until t->until, then an empty message as the end mark (the writer stays attached: closing
   it here would race with the reader thread that shares its channel handle). */
static void *writer_thread(void *arg)
{
	struct thr *t = arg;
	uint64_t p = 0;
	int rc = 0;

	while (rc == 0 && (t_now_ns() < t->until || p < 1000)) {
		rc = send_pos(t->w, p, SLOT, T_MS(10000));
		p += rc == 0;
	}
	if (rc == 0)
		rc = shmchan_send(t->w, "", 0, T_MS(10000));
	if (rc)
		snprintf(t->error, sizeof(t->error), "send %llu: %s", (unsigned long long)p, shmchan_strerror(rc));
	t->count = p;
	return NULL;
}

static void *reader_thread(void *arg)
{
	struct thr *t = arg;
	struct shmchan_msg msgs[4];
	uint8_t buf[SLOT];
	uint64_t p = 0, len;
	int rc;

	for (;;) {
		if (t->slow && p % 64 == 0)
			t_sleep_ms(1);
		if (p % 2) {
			rc = shmchan_recv(t->r, buf, sizeof(buf), &len, T_MS(10000));
			if (rc == 0 && len == 0)
				break; /* the end mark */
			if (rc == 0 && !intact(buf, len, p, SLOT))
				goto bad;
			p += rc == 0;
		} else {
			int n = shmchan_peek_batch(t->r, msgs, 4, T_MS(10000)), end = -1;
			for (int i = 0; i < n; i++) {
				if (msgs[i].pos != p + (uint64_t)i || end >= 0)
					goto bad;
				if (msgs[i].len == 0)
					end = i; /* the end mark */
				else if (!intact(msgs[i].data, msgs[i].len, msgs[i].pos, SLOT))
					goto bad;
			}
			for (int i = n - 1; i >= 0; i--)
				if (shmchan_release(t->r, msgs[i].pos))
					goto bad;
			if (end >= 0) {
				p += (uint64_t)end;
				break;
			}
			p += n > 0 ? (uint64_t)n : 0;
			rc = n > 0 ? 0 : n;
		}
		if (rc) {
			snprintf(t->error, sizeof(t->error), "reader at %llu: %s", (unsigned long long)p,
				 shmchan_strerror(rc));
			return NULL;
		}
	}
	t->count = p;
	return NULL;
bad:
	snprintf(t->error, sizeof(t->error), "reader: message %llu missing, torn or misplaced", (unsigned long long)p);
	return NULL;
}

static void threads_block_shared_handle(void)
{
	shmchan_channel *ch = bc_create("threads", SLOT, 8, 2, BLOCK);
	struct rd other = rd_attach("threads", 0);
	struct thr tw, t0, t1;
	pthread_t pw, p0, p1;

	memset(&tw, 0, sizeof(tw));
	memset(&t0, 0, sizeof(t0));
	memset(&t1, 0, sizeof(t1));
	CHECK_RC(shmchan_writer_attach(ch, &tw.w), 0);
	CHECK_RC(shmchan_reader_attach(ch, &t0.r), 0);
	t1.r = other.r;
	t0.slow = 1; /* the writer waits for the reader on its own handle, spins, sleeps, looks for the dead */
	tw.until = t_now_ns() + T_MS(1000);
	CHECK(pthread_create(&p0, NULL, reader_thread, &t0) == 0);
	CHECK(pthread_create(&p1, NULL, reader_thread, &t1) == 0);
	CHECK(pthread_create(&pw, NULL, writer_thread, &tw) == 0);
	CHECK(pthread_join(pw, NULL) == 0);
	CHECK(pthread_join(p0, NULL) == 0);
	CHECK(pthread_join(p1, NULL) == 0);
	CHECK_MSG(!tw.error[0] && !t0.error[0] && !t1.error[0], "%s %s %s", tw.error, t0.error, t1.error);
	printf("  %llu messages, each read by both threads\n", (unsigned long long)tw.count);
	CHECK(t0.count == tw.count && t1.count == tw.count);
	shmchan_writer_close(tw.w);
	shmchan_reader_close(t0.r);
	rd_close(&other);
	bc_remove(ch);
}

/* ======== multi-process stress ======== */

struct stress {
	const char *tag;
	uint32_t policy;
	uint32_t cap;
	uint64_t slot;
	int readers;
	int slow;   /* reader index that sleeps now and then (-1: none) */
	int killed; /* reader index killed half-way (-1: none) */
	long ms;
};

/* One reader process: reads to the end of the stream, checking every message; reports its counts. */
static void stress_reader(const struct stress *s, int idx, int ready_fd, int report_fd)
{
	struct rd x = rd_attach(s->tag, SHMCHAN_START_OLDEST);
	struct shmchan_msg msgs[4];
	struct shmchan_place_info pi;
	struct report rep;
	uint8_t *copy = malloc(4 * s->slot);
	const int block = s->policy == BLOCK;
	uint64_t len;
	int rc;

	CHECK(copy != NULL);
	memset(&rep, 0, sizeof(rep));
	rep.idx = idx;
	t_put_u64(ready_fd, (uint64_t)idx);
	for (uint64_t k = 0;; k++) {
		if (idx == s->slow && k % 16 == 0)
			t_sleep_ms(1);
		if (k % 3 == 0) {
			/* copy out: never torn, whatever the policy */
			uint64_t before = shmchan_reader_lost(x.r), p, d;
			rc = shmchan_recv(x.r, copy, s->slot, &len, T_MS(10000));
			if (rc == -SHMCHAN_EENDED)
				break;
			CHECK_MSG(rc == 0, "recv: %d (%s) %s", rc, shmchan_strerror(rc), shmchan_channel_diag(x.ch));
			p = pos_in(copy, len);
			d = shmchan_reader_lost(x.r) - before;
			CHECK_MSG(intact(copy, len, p, s->slot), "recv returned a torn copy (claims %llu, after %llu)",
				  (unsigned long long)p, (unsigned long long)rep.next);
			CHECK_MSG(p == rep.next + d && (!block || d == 0), "recv: %llu after %llu, %llu lost",
				  (unsigned long long)p, (unsigned long long)rep.next, (unsigned long long)d);
			rep.lost += d;
			rep.next = p + 1;
			rep.received++;
			continue;
		}
		/* zero-copy: one message, or a batch released newest first */
		rc = shmchan_peek_batch(x.r, msgs, k % 3 == 1 ? 1 : 4, T_MS(10000));
		if (rc == -SHMCHAN_EENDED)
			break;
		CHECK_MSG(rc >= 1, "peek_batch: %d (%s) %s", rc, shmchan_strerror(rc), shmchan_channel_diag(x.ch));
		for (int i = 0; i < rc; i++) {
			CHECK_MSG(msgs[i].pos == rep.next + msgs[i].lost && (!block || msgs[i].lost == 0),
				  "peek: %llu after %llu, %u lost", (unsigned long long)msgs[i].pos,
				  (unsigned long long)rep.next, msgs[i].lost);
			CHECK(msgs[i].len <= s->slot);
			memcpy(copy + (uint64_t)i * s->slot, msgs[i].data, (size_t)msgs[i].len);
			rep.lost += msgs[i].lost;
			rep.next = msgs[i].pos + 1;
		}
		for (int i = rc - 1; i >= 0; i--) {
			const uint8_t *c = copy + (uint64_t)i * s->slot;
			int ok = shmchan_check(x.r, msgs[i].pos), rel;
			if (ok == 0)
				CHECK_MSG(intact(c, msgs[i].len, msgs[i].pos, s->slot),
					  "message %llu is torn but shmchan_check said intact",
					  (unsigned long long)msgs[i].pos);
			else
				CHECK_MSG(ok == -ESTALE && !block, "check %llu: %d", (unsigned long long)msgs[i].pos, ok);
			if (ok && !intact(c, msgs[i].len, msgs[i].pos, s->slot))
				rep.torn++;
			rel = shmchan_release(x.r, msgs[i].pos);
			CHECK_MSG(rel == 0 || (rel == -ESTALE && !block), "release %llu: %d", (unsigned long long)msgs[i].pos,
				  rel);
			CHECK_MSG(ok == 0 || rel == -ESTALE, "stale message %llu released as intact",
				  (unsigned long long)msgs[i].pos);
			if (rel == 0) {
				rep.received++;
			} else {
				rep.stale++;
				rep.lost++;
			}
		}
	}
	rep.lib_lost = shmchan_reader_lost(x.r);
	CHECK(place_of(x.ch, getpid(), &pi) >= 0);
	rep.place_lost = pi.lost;
	put_report(report_fd, &rep);
	free(copy);
	rd_close(&x);
	t_peer_exit(0);
}

static void run_stress(const struct stress *s)
{
	shmchan_channel *ch = bc_create(s->tag, s->slot, s->cap, (uint32_t)s->readers, s->policy);
	shmchan_writer *w;
	struct shmchan_stats st;
	pid_t pids[8];
	int ready[2], reports[2], killed = 0;
	uint64_t sent = 0, v, sum_received = 0, sum_lost = 0, sum_torn = 0;
	int64_t t0, longest = 0;

	t_pipe(ready);
	t_pipe(reports);
	for (int i = 0; i < s->readers; i++) {
		pids[i] = t_fork();
		if (pids[i] == 0)
			stress_reader(s, i, ready[1], reports[1]);
	}
	for (int i = 0; i < s->readers; i++)
		CHECK_RC(t_get_u64(ready[0], &v, 5000), 0);
	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	t0 = t_now_ns();
	while (t_now_ns() - t0 < T_MS(s->ms)) {
		for (int i = 0; i < 64; i++, sent++) {
			int64_t t1 = t_now_ns();
			/* block: the writer waits as long as it must; overwrite: it never waits */
			CHECK_RC(send_pos(w, sent, s->slot, s->policy == BLOCK ? -1 : 0), 0);
			if (t_now_ns() - t1 > longest)
				longest = t_now_ns() - t1;
		}
		if (s->killed >= 0 && !killed && t_now_ns() - t0 > T_MS(s->ms / 2)) {
			kill(pids[s->killed], SIGKILL);
			killed = 1;
		}
	}
	shmchan_writer_close(w);
	CHECK_RC(shmchan_stats(ch, &st), 0);
	CHECK(st.head == sent && st.messages_written == sent);
	for (int i = 0; i < s->readers; i++)
		CHECK_CHILD(pids[i], 30000, i == s->killed ? 128 + SIGKILL : 0);
	printf("  %s, %d readers%s%s: %llu sent in %.0f ms (longest send %.1f ms, %llu full waits)\n",
	       s->policy == BLOCK ? "block" : "overwrite", s->readers, s->slow >= 0 ? ", one slow" : "",
	       s->killed >= 0 ? ", one killed" : "", (unsigned long long)sent, t_ms(t_now_ns() - t0), t_ms(longest),
	       (unsigned long long)st.full_waits);
	for (int i = 0; i < s->readers - (s->killed >= 0); i++) {
		struct report rep;
		CHECK_RC(get_report(reports[0], &rep, 5000), 0);
		printf("    reader %d: %llu received, %llu lost (%llu released stale, %llu torn copies caught)\n", rep.idx,
		       (unsigned long long)rep.received, (unsigned long long)rep.lost, (unsigned long long)rep.stale,
		       (unsigned long long)rep.torn);
		CHECK_MSG(rep.next == sent, "reader %d ended at %llu of %llu", rep.idx, (unsigned long long)rep.next,
			  (unsigned long long)sent);
		CHECK_MSG(rep.received + rep.lost == sent, "reader %d: %llu received + %llu lost != %llu sent", rep.idx,
			  (unsigned long long)rep.received, (unsigned long long)rep.lost, (unsigned long long)sent);
		CHECK_MSG(rep.lib_lost == rep.lost && rep.place_lost == rep.lost,
			  "reader %d counted %llu lost, the library %llu, its place %llu", rep.idx,
			  (unsigned long long)rep.lost, (unsigned long long)rep.lib_lost,
			  (unsigned long long)rep.place_lost);
		if (s->policy == BLOCK)
			CHECK(rep.lost == 0 && rep.received == sent);
		sum_received += rep.received;
		sum_lost += rep.lost;
		sum_torn += rep.torn;
	}
	CHECK(sent > 1000);
	if (s->policy == OVERWRITE && s->slow >= 0)
		CHECK_MSG(sum_lost > 0, "the slow reader lost nothing");
	(void)sum_received;
	(void)sum_torn;
	close(ready[0]);
	close(ready[1]);
	close(reports[0]);
	close(reports[1]);
	bc_remove(ch);
}

static void stress_block_one_reader(void)
{
	struct stress s = {"sb1", BLOCK, 8, 512, 1, -1, -1, 1000};
	run_stress(&s);
}

static void stress_block_four_readers_one_slow(void)
{
	struct stress s = {"sb4", BLOCK, 8, 512, 4, 3, -1, 1500};
	run_stress(&s);
}

static void stress_block_reader_killed(void)
{
	struct stress s = {"sbk", BLOCK, 8, 512, 3, -1, 1, 1500};
	run_stress(&s);
}

static void stress_overwrite_one_reader(void)
{
	struct stress s = {"so1", OVERWRITE, 16, 512, 1, -1, -1, 1000};
	run_stress(&s);
}

static void stress_overwrite_four_readers_one_slow(void)
{
	struct stress s = {"so4", OVERWRITE, 4, 2048, 4, 0, -1, 1500};
	run_stress(&s);
}

static void stress_overwrite_reader_killed(void)
{
	struct stress s = {"sok", OVERWRITE, 8, 1024, 3, 2, 0, 1500};
	run_stress(&s);
}

/* ======== join/leave churn under block policy ======== */

#define CHURN_CAP 8u
#define CHURN_SLOT 256u

/*
 * A reader process that attaches, reads a run of messages, closes, and again, until the stream
 * ends. Each session must see a gap-free, untorn run that starts no earlier than where its flag
 * says (the join protocol (J1)-(J4) must not let the writer overwrite where the joiner starts).
 */
static void churn_reader(const char *tag, int idx, int ready_fd, int report_fd)
{
	shmchan_channel *ch = bc_open(tag);
	struct report rep;
	struct shmchan_msg m;
	uint64_t rnd = UINT64_C(0x1234567) + (uint64_t)idx, len;
	uint8_t buf[CHURN_SLOT];
	int ended = 0;

	memset(&rep, 0, sizeof(rep));
	rep.idx = idx;
	t_put_u64(ready_fd, (uint64_t)idx);
	while (!ended) {
		const uint32_t flags = rep.sessions % 2 ? SHMCHAN_START_OLDEST : SHMCHAN_START_LATEST;
		struct shmchan_stats st;
		shmchan_reader *r;
		uint64_t h0, first = UINT64_MAX, p = 0, want;

		rnd = rnd * 6364136223846793005ull + 1442695040888963407ull;
		want = 1 + (rnd >> 33) % (3 * CHURN_CAP);
		CHECK_RC(shmchan_stats(ch, &st), 0);
		h0 = st.head;
		CHECK_RC(shmchan_reader_attach_ex(ch, flags, &r), 0);
		if ((rnd >> 24) % 2)
			t_sleep_ms(1); /* a joiner the writer missed would lose its first message meanwhile */
		for (uint64_t i = 0; i < want; i++) {
			int rc;
			if ((rnd >> 20) % 4 == 0 && i % 4 == 0)
				t_sleep_ms(1); /* now and then the slowest: the writer waits and scans while others join */
			if (i % 2) {
				rc = shmchan_recv(r, buf, sizeof(buf), &len, T_MS(10000));
				if (rc == 0) {
					p = pos_in(buf, len);
					CHECK_MSG(intact(buf, len, p, CHURN_SLOT), "torn copy at %llu", (unsigned long long)p);
				}
			} else {
				rc = shmchan_peek(r, T_MS(10000), &m);
				if (rc == 0) {
					p = m.pos;
					CHECK(m.lost == 0);
					CHECK_MSG(intact(m.data, m.len, p, CHURN_SLOT), "message %llu torn (session %llu)",
						  (unsigned long long)p, (unsigned long long)rep.sessions);
					CHECK_RC(shmchan_release(r, p), 0);
				}
			}
			if (rc == -SHMCHAN_EENDED) {
				ended = 1;
				break;
			}
			CHECK_RC(rc, 0);
			if (first == UINT64_MAX) {
				uint64_t earliest = flags == SHMCHAN_START_LATEST ? (h0 ? h0 - 1 : 0)
										  : (h0 > CHURN_CAP ? h0 - CHURN_CAP : 0);
				CHECK_MSG(p >= earliest, "session started at %llu, head was %llu before attaching",
					  (unsigned long long)p, (unsigned long long)h0);
				first = p;
			} else {
				CHECK_MSG(p == first + i, "gap: %llu after %llu (session from %llu)", (unsigned long long)p,
					  (unsigned long long)(first + i - 1), (unsigned long long)first);
			}
			rep.received++;
		}
		shmchan_reader_close(r);
		rep.sessions++;
		if (rep.sessions % 5 == 0) {
			/* now and then from a fresh handle */
			shmchan_close(ch);
			ch = bc_open(tag);
		}
	}
	shmchan_close(ch);
	put_report(report_fd, &rep);
	t_peer_exit(0);
}

static void join_leave_churn(void)
{
	const int churners = 3;
	shmchan_channel *ch = bc_create("churn", CHURN_SLOT, CHURN_CAP, 5, BLOCK);
	shmchan_writer *w;
	pid_t steady, pids[3];
	int ready[2], reports[2];
	uint64_t sent = 0, v, sessions = 0, received = 0;
	int64_t t0;

	t_pipe(ready);
	t_pipe(reports);
	/* a steady reader takes everything, a little slowly */
	steady = t_fork();
	if (steady == 0) {
		struct rd x = rd_attach("churn", 0);
		uint64_t p = 0;
		t_put_u64(ready[1], 99);
		for (;; p++) {
			uint8_t buf[CHURN_SLOT];
			uint64_t len;
			int rc = shmchan_recv(x.r, buf, sizeof(buf), &len, T_MS(10000));
			if (rc == -SHMCHAN_EENDED)
				break;
			CHECK_RC(rc, 0);
			CHECK_MSG(intact(buf, len, p, CHURN_SLOT), "steady reader: message %llu", (unsigned long long)p);
			if (p % 256 == 0)
				t_sleep_ms(1);
		}
		t_put_u64(ready[1], p);
		rd_close(&x);
		t_peer_exit(0);
	}
	for (int i = 0; i < churners; i++) {
		pids[i] = t_fork();
		if (pids[i] == 0)
			churn_reader("churn", i, ready[1], reports[1]);
	}
	for (int i = 0; i < churners + 1; i++)
		CHECK_RC(t_get_u64(ready[0], &v, 5000), 0);
	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	t0 = t_now_ns();
	while (t_now_ns() - t0 < T_MS(2000))
		for (int i = 0; i < 64; i++, sent++)
			CHECK_RC(send_pos(w, sent, CHURN_SLOT, T_MS(10000)), 0);
	shmchan_writer_close(w);
	CHECK_CHILD(steady, 30000, 0);
	CHECK_RC(t_get_u64(ready[0], &v, 1000), 0);
	CHECK_MSG(v == sent, "the steady reader got %llu of %llu", (unsigned long long)v, (unsigned long long)sent);
	for (int i = 0; i < churners; i++) {
		struct report rep;
		CHECK_CHILD(pids[i], 30000, 0);
		CHECK_RC(get_report(reports[0], &rep, 5000), 0);
		CHECK(rep.sessions > 10);
		sessions += rep.sessions;
		received += rep.received;
	}
	printf("  %llu sent; %d churning readers: %llu sessions, %llu messages, each session gap-free\n",
	       (unsigned long long)sent, churners, (unsigned long long)sessions, (unsigned long long)received);
	close(ready[0]);
	close(ready[1]);
	close(reports[0]);
	close(reports[1]);
	bc_remove(ch);
}

int main(void)
{
	int fails = 0;

	t_init();
	fails += t_case("geometry_refused", geometry_refused, 10);
	fails += t_case("info_reports_kind", info_reports_kind, 10);
	fails += t_case("block_every_reader_every_message", block_every_reader_every_message, 20);
	fails += t_case("block_writer_waits_for_slowest", block_writer_waits_for_slowest, 10);
	fails += t_case("block_reader_on_writer_handle", block_reader_on_writer_handle, 10);
	fails += t_case("start_latest_and_oldest", start_latest_and_oldest, 10);
	fails += t_case("places_taken_and_reused", places_taken_and_reused, 10);
	fails += t_case("join_waits_for_running_scan", join_waits_for_running_scan, 20);
	fails += t_case("block_killed_reader_frees_writer", block_killed_reader_frees_writer, 30);
	fails += t_case("overwrite_lapped_reader_counts_lost", overwrite_lapped_reader_counts_lost, 20);
	fails += t_case("overwrite_held_message_goes_stale", overwrite_held_message_goes_stale, 10);
	fails += t_case("overwrite_pinned_reader", overwrite_pinned_reader, 10);
	fails += t_case("threads_block_shared_handle", threads_block_shared_handle, 60);
	fails += t_case("stress_block_one_reader", stress_block_one_reader, 40);
	fails += t_case("stress_block_four_readers_one_slow", stress_block_four_readers_one_slow, 40);
	fails += t_case("stress_block_reader_killed", stress_block_reader_killed, 40);
	fails += t_case("stress_overwrite_one_reader", stress_overwrite_one_reader, 40);
	fails += t_case("stress_overwrite_four_readers_one_slow", stress_overwrite_four_readers_one_slow, 40);
	fails += t_case("stress_overwrite_reader_killed", stress_overwrite_reader_killed, 40);
	fails += t_case("join_leave_churn", join_leave_churn, 60);
	return t_done(fails);
}
