/* SPDX-License-Identifier: MIT */
/* Hostile peers, round two: what a peer or a local user can write or put at a name never crashes,
   hangs or silently corrupts the core. Each case runs in a forked child with a watchdog. */
#include <dirent.h>
#include <pthread.h>
#include <sys/wait.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "testutil.h"

#include "layout.h"

static struct shmchan_config bcast_config(uint64_t slot_size, uint32_t capacity, uint32_t max_readers, uint32_t policy)
{
	struct shmchan_config c = t_config(slot_size, capacity);
	c.kind = SHMCHAN_KIND_BROADCAST;
	c.max_readers = max_readers;
	c.policy = policy;
	return c;
}

static struct shmchan_config board_config(uint64_t slot_size)
{
	struct shmchan_config c = t_config(slot_size, 2);
	c.kind = SHMCHAN_KIND_STATE;
	return c;
}

static size_t place_off(const struct t_map *m, uint32_t i, size_t field)
{
	return (size_t)t_get64(m, SHMCHAN_OFF_READERS_OFFSET) + (size_t)i * SHMCHAN_READER_PLACE_SIZE + field;
}

/* ---- crashes: the SIGBUS guard's table full ---- */

/* 1100 handles of one channel (the table had 1024 entries, and the 1025th mapping went unguarded):
   a peer truncates the object, and the copy on the last handle reports it instead of dying. */
static void guard_table_grows_past_1024_mappings(void)
{
	enum { N = 1100 };
	struct shmchan_config cfg = t_config(8192, 2);
	const char *name = t_name("guard");
	static shmchan_channel *ch[N];
	struct rlimit rl;
	shmchan_writer *w;
	shmchan_reader *r;
	char shm[300], buf[8192];
	uint64_t len;
	int fd;

	CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
	if (rl.rlim_max < N + 64) {
		printf("SKIP-CASE: RLIMIT_NOFILE hard limit %llu is too low\n", (unsigned long long)rl.rlim_max);
		return;
	}
	rl.rlim_cur = rl.rlim_max;
	CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
	CHECK_RC(shmchan_create(name, &cfg, &ch[0], NULL), 0);
	for (int i = 1; i < N; i++)
		CHECK_RC(shmchan_open(name, 0, &ch[i], NULL), 0);
	CHECK_RC(shmchan_writer_attach(ch[0], &w), 0);
	CHECK_RC(shmchan_reader_attach(ch[N - 1], &r), 0);
	memset(buf, 5, sizeof(buf));
	CHECK_RC(shmchan_send(w, buf, sizeof(buf), 0), 0);
	snprintf(shm, sizeof(shm), "/shmchan.%s", name);
	fd = shm_open(shm, O_RDWR, 0);
	CHECK(fd >= 0);
	CHECK(ftruncate(fd, 4096) == 0); /* the slots are gone */
	close(fd);
	CHECK_RC(shmchan_recv(r, buf, sizeof(buf), &len, 0), -SHMCHAN_ECORRUPT);
	CHECK(strstr(shmchan_channel_diag(ch[N - 1]), "truncated") != NULL);
	for (int i = N - 1; i >= 0; i--)
		shmchan_close(ch[i]);
	(void)shm_unlink(shm);
}

/* ---- hangs: an odd scan_seq ---- */

static void on_usr1(int sig)
{
	(void)sig;
}

struct kick {
	pthread_t target;
	long after_ms;
};

/* One signal, after after_ms: the join holds signals between its naps, so it cannot miss it. */
static void *kick_later(void *arg)
{
	struct kick *k = arg;

	t_sleep_ms(k->after_ms);
	pthread_kill(k->target, SIGUSR1);
	return NULL;
}

/* A live writer's scan_seq stays odd (a peer wrote it, or the writer stopped mid-scan): a joining
   reader gives up after about 1 s with -ETIMEDOUT, and a signal ends the wait at once with -EINTR;
   the place it took is free again. */
static void odd_scan_seq_join_has_deadline_and_signal_check(void)
{
	struct shmchan_config cfg = bcast_config(64, 4, 2, SHMCHAN_POLICY_BLOCK);
	const char *name = t_name("oddscan");
	shmchan_channel *wch, *rch, *rch2;
	shmchan_writer *w;
	shmchan_reader *r;
	struct t_map m;
	struct sigaction sa;
	struct kick k;
	pthread_t th;
	int64_t t0;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1; /* no SA_RESTART: like Python's handlers */
	sigemptyset(&sa.sa_mask);
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	CHECK_RC(shmchan_create(name, &cfg, &wch, NULL), 0);
	CHECK_RC(shmchan_writer_attach(wch, &w), 0);
	CHECK_RC(shmchan_open(name, 0, &rch, NULL), 0);
	CHECK_RC(shmchan_open(name, 0, &rch2, NULL), 0);
	m = t_map_object(name);
	t_put64(&m, SHMCHAN_OFF_SCAN_SEQ, 12345); /* odd, and the writer lives */

	t0 = t_now_ns();
	CHECK_RC(shmchan_reader_attach(rch, &r), -ETIMEDOUT);
	CHECK_MSG(t_now_ns() - t0 < T_MS(3000), "gave up after %.0f ms", t_ms(t_now_ns() - t0));
	CHECK(strstr(shmchan_channel_diag(rch), "scan_seq") != NULL);

	k.target = pthread_self();
	k.after_ms = 100;
	CHECK(pthread_create(&th, NULL, kick_later, &k) == 0);
	t0 = t_now_ns();
	CHECK_RC(shmchan_reader_attach(rch2, &r), -EINTR);
	CHECK_MSG(t_now_ns() - t0 < T_MS(600), "a signal ended the join after %.0f ms", t_ms(t_now_ns() - t0));
	pthread_join(th, NULL);

	/* both places are free again, and an even scan_seq lets a reader join */
	t_put64(&m, SHMCHAN_OFF_SCAN_SEQ, 12346);
	CHECK_RC(shmchan_reader_attach(rch, &r), 0);
	CHECK_RC(shmchan_reader_attach(rch2, &r), 0);
	t_unmap(&m);
	shmchan_close(rch2);
	shmchan_close(rch);
	CHECK_RC(shmchan_channel_unlink(wch), 0);
	shmchan_close(wch);
}

/* ---- hangs: something other than a regular file at the name ---- */

static void check_refused(const char *name, const char *what)
{
	struct shmchan_config cfg = t_config(64, 4);
	struct shmchan_diag diag;
	shmchan_channel *ch;
	int64_t t0 = t_now_ns();

	memset(&diag, 0, sizeof(diag));
	CHECK_RC(shmchan_open(name, T_MS(500), &ch, &diag), -SHMCHAN_ENOTREG);
	CHECK_MSG(strstr(diag.message, what) != NULL, "diag says: %s", diag.message);
	CHECK_RC(shmchan_is_stale(name), -SHMCHAN_ENOTREG);
	CHECK_RC(shmchan_reclaim_stale(name), -SHMCHAN_ENOTREG);
	CHECK_RC(shmchan_create(name, &cfg, &ch, NULL), -EEXIST);
	CHECK_MSG(t_now_ns() - t0 < T_MS(400), "took %.0f ms", t_ms(t_now_ns() - t0));
}

static void fifo_dir_socket_symlink_at_the_name_are_refused(void)
{
	struct shmchan_config cfg = t_config(64, 4);
	char fifo[128], dir[128], sock[128], link[128], real[128], path[300], target[300];
	struct sockaddr_un sa;
	shmchan_channel *ch;
	int s;

	t_name_buf(fifo, sizeof(fifo), "fifo");
	t_shm_path(path, sizeof(path), fifo);
	CHECK(mkfifo(path, 0600) == 0);
	check_refused(fifo, "a FIFO");

	t_name_buf(dir, sizeof(dir), "dir");
	t_shm_path(path, sizeof(path), dir);
	CHECK(mkdir(path, 0700) == 0);
	check_refused(dir, "a directory");
	CHECK(rmdir(path) == 0);

	t_name_buf(sock, sizeof(sock), "sock");
	t_shm_path(path, sizeof(path), sock);
	s = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(s >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	CHECK(strlen(path) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	CHECK(bind(s, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	check_refused(sock, "a socket");
	close(s);

	/* a symlink to a real channel: never followed */
	t_name_buf(real, sizeof(real), "real");
	CHECK_RC(shmchan_create(real, &cfg, &ch, NULL), 0);
	t_name_buf(link, sizeof(link), "link");
	t_shm_path(path, sizeof(path), link);
	t_shm_path(target, sizeof(target), real);
	CHECK(symlink(target, path) == 0);
	check_refused(link, "a symbolic link");
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

/* A file-backed channel's path: a symlink or a FIFO is refused, never followed or blocked on. */
static void file_paths_refuse_symlinks_and_fifos(void)
{
	struct shmchan_config cfg = t_config(64, 4);
	char dir[256], real[300], link[300], fifo[300];
	struct shmchan_diag diag;
	shmchan_channel *ch, *other;

	t_tmpdir(dir, sizeof(dir));
	snprintf(real, sizeof(real), "%s/real.chan", dir);
	snprintf(link, sizeof(link), "%s/link.chan", dir);
	snprintf(fifo, sizeof(fifo), "%s/fifo.chan", dir);
	CHECK_RC(shmchan_create_file(real, &cfg, &ch, NULL), 0);
	CHECK(symlink(real, link) == 0);
	CHECK(mkfifo(fifo, 0600) == 0);
	CHECK_RC(shmchan_open_file(link, 0, &other, &diag), -SHMCHAN_ENOTREG);
	CHECK(strstr(diag.message, "symbolic link") != NULL);
	CHECK_RC(shmchan_open_file(fifo, 0, &other, &diag), -SHMCHAN_ENOTREG);
	CHECK(strstr(diag.message, "FIFO") != NULL);
	CHECK_RC(shmchan_create_file(link, &cfg, &other, NULL), -EEXIST);
	shmchan_close(ch);
}

/* ---- silent loss: a reader place's generation at 2^64 - 1 ---- */

/* gen + 1 used to be the "found dead" mark, with 0 meaning none: a live reader whose place says
   2^64 - 1 looked buried, and a block-policy writer overwrote what it still held. */
static void place_generation_max_never_looks_buried(void)
{
	struct shmchan_config cfg = bcast_config(64, 2, 2, SHMCHAN_POLICY_BLOCK);
	const char *name = t_name("genmax");
	shmchan_channel *wch, *rch;
	shmchan_writer *w;
	shmchan_reader *r;
	struct shmchan_msg msg;
	struct t_map m;

	CHECK_RC(shmchan_create(name, &cfg, &wch, NULL), 0);
	CHECK_RC(shmchan_open(name, 0, &rch, NULL), 0);
	CHECK_RC(shmchan_reader_attach(rch, &r), 0);
	m = t_map_object(name);
	t_put64(&m, place_off(&m, 0, SHMCHAN_PLACE_GEN), UINT64_MAX);
	CHECK_RC(shmchan_writer_attach(wch, &w), 0);
	CHECK_RC(shmchan_send(w, "a", 1, 0), 0);
	CHECK_RC(shmchan_send(w, "b", 1, 0), 0);
	CHECK_RC(shmchan_peek(r, 0, &msg), 0);
	CHECK(msg.len == 1 && *(const char *)msg.data == 'a');
	/* the reader holds "a": the ring is full for the writer */
	CHECK_RC(shmchan_send(w, "c", 1, 0), -EAGAIN);
	CHECK(*(const char *)msg.data == 'a');
	CHECK_RC(shmchan_release(r, msg.pos), 0);
	CHECK_RC(shmchan_send(w, "c", 1, 0), 0);
	t_unmap(&m);
	shmchan_close(rch);
	CHECK_RC(shmchan_channel_unlink(wch), 0);
	shmchan_close(wch);
}

/* ---- silent loss: head at the end of the position space ---- */

static void head_at_the_end_is_refused_at_attach(void)
{
	struct shmchan_config board = board_config(8), bc = bcast_config(64, 4, 2, SHMCHAN_POLICY_OVERWRITE);
	const char *name = t_name("headmax");
	shmchan_channel *ch, *other;
	shmchan_writer *w;
	shmchan_reader *r;
	struct t_map m;
	uint64_t len, version;
	char buf[8];

	/* a board: the next version would wrap to 0, "no value" */
	CHECK_RC(shmchan_create(name, &board, &ch, NULL), 0);
	m = t_map_object(name);
	t_put64(&m, SHMCHAN_OFF_HEAD, UINT64_MAX);
	CHECK_RC(shmchan_writer_attach(ch, &w), -SHMCHAN_ECORRUPT);
	CHECK(strstr(shmchan_channel_diag(ch), "version") != NULL);
	CHECK_RC(shmchan_open(name, 0, &other, NULL), 0);
	CHECK_RC(shmchan_state_read(other, buf, sizeof(buf), &len, &version), -SHMCHAN_ECORRUPT);
	shmchan_close(other);
	t_unmap(&m);
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);

	/* a broadcast: a slot's seq would meet WRITING, then 0 */
	CHECK_RC(shmchan_create(name, &bc, &ch, NULL), 0);
	m = t_map_object(name);
	t_put64(&m, SHMCHAN_OFF_HEAD, UINT64_MAX - 1);
	CHECK_RC(shmchan_writer_attach(ch, &w), -SHMCHAN_ECORRUPT);
	CHECK_RC(shmchan_open(name, 0, &other, NULL), 0);
	CHECK_RC(shmchan_reader_attach(other, &r), -SHMCHAN_ECORRUPT);
	shmchan_close(other);
	t_unmap(&m);
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

/* ---- silent loss: the sleeper count of a killed reader ---- */

/* A reader killed while asleep never subtracts itself from reader_waiting: every commit then made
   a futex call with nobody asleep. The writer now clears what dead sleepers left, and a live
   sleeper in another process still wakes at once. */
static void killed_sleeper_count_is_repaired(int kind)
{
	struct shmchan_config cfg = kind == SHMCHAN_KIND_STATE ? board_config(8)
							       : bcast_config(8, 4, 4, SHMCHAN_POLICY_OVERWRITE);
	const char *name = t_name(kind == SHMCHAN_KIND_STATE ? "sleep-st" : "sleep-bc");
	shmchan_channel *ch;
	shmchan_writer *w;
	struct t_map m;
	int fds[2], live[2];
	uint64_t v;
	pid_t dead, alive;

	CHECK_RC(shmchan_create(name, &cfg, &ch, NULL), 0);
	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	m = t_map_object(name);
	t_pipe(fds);
	dead = t_fork();
	if (dead == 0) {
		shmchan_channel *c;
		shmchan_reader *r;
		struct shmchan_msg msg;
		uint64_t now;
		close(fds[0]);
		CHECK_RC(shmchan_open(name, 0, &c, NULL), 0);
		if (kind != SHMCHAN_KIND_STATE)
			CHECK_RC(shmchan_reader_attach(c, &r), 0);
		t_put_u64(fds[1], 1);
		if (kind == SHMCHAN_KIND_STATE)
			(void)shmchan_state_wait(c, 0, T_MS(60000), &now);
		else
			(void)shmchan_peek(r, T_MS(60000), &msg);
		t_peer_exit(1);
	}
	close(fds[1]);
	CHECK_RC(t_get_u64(fds[0], &v, 5000), 0);
	for (int i = 0; i < 500 && t_get32(&m, SHMCHAN_OFF_READER_WAITING) == 0; i++)
		t_sleep_ms(2);
	CHECK(t_get32(&m, SHMCHAN_OFF_READER_WAITING) == 1);
	t_sleep_ms(20); /* asleep in the futex */
	kill(dead, SIGKILL);
	CHECK_CHILD(dead, 5000, 128 + SIGKILL);
	CHECK(t_get32(&m, SHMCHAN_OFF_READER_WAITING) == 1); /* left behind */

	/* a live sleeper in another process, counted too */
	t_pipe(live);
	alive = t_fork();
	if (alive == 0) {
		shmchan_channel *c;
		shmchan_reader *r;
		struct shmchan_msg msg;
		uint64_t now;
		close(live[0]);
		CHECK_RC(shmchan_open(name, 0, &c, NULL), 0);
		if (kind != SHMCHAN_KIND_STATE)
			CHECK_RC(shmchan_reader_attach(c, &r), 0);
		t_put_u64(live[1], 1);
		if (kind == SHMCHAN_KIND_STATE) {
			CHECK_RC(shmchan_state_wait(c, 0, T_MS(10000), &now), 0);
		} else {
			CHECK_RC(shmchan_peek(r, T_MS(10000), &msg), 0);
		}
		t_put_u64(live[1], 2);
		t_peer_exit(0);
	}
	close(live[1]);
	CHECK_RC(t_get_u64(live[0], &v, 5000), 0);
	for (int i = 0; i < 500 && t_get32(&m, SHMCHAN_OFF_READER_WAITING) < 2; i++)
		t_sleep_ms(2);
	CHECK(t_get32(&m, SHMCHAN_OFF_READER_WAITING) == 2);
	t_sleep_ms(20);
	/* the live sleeper wakes on the first commit (the wake-up is not futile: no repair) */
	CHECK_RC(shmchan_send(w, "12345678", 8, 0), 0);
	CHECK_RC(t_get_u64(live[0], &v, 80), 0); /* well within one 100 ms slice: woken, not timed out */
	CHECK(v == 2);
	CHECK_CHILD(alive, 5000, 0);
	/* now only the dead one is counted: a few futile wake-ups, then the writer repairs the count */
	for (int i = 0; i < 16; i++)
		CHECK_RC(shmchan_send(w, "12345678", 8, 0), 0);
	CHECK_MSG(t_get32(&m, SHMCHAN_OFF_READER_WAITING) == 0, "reader_waiting is %u",
		  t_get32(&m, SHMCHAN_OFF_READER_WAITING));
	t_unmap(&m);
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

static void killed_sleeping_state_reader(void)
{
	killed_sleeper_count_is_repaired(SHMCHAN_KIND_STATE);
}

static void killed_sleeping_broadcast_reader(void)
{
	killed_sleeper_count_is_repaired(SHMCHAN_KIND_BROADCAST);
}

/* ---- sparse objects ---- */

/* A valid header over an object whose blocks were never allocated (ftruncate, no fallocate): an
   opener would MAP_POPULATE all of it. Refused before anything is mapped. */
static void sparse_object_is_refused_before_mapping(void)
{
	struct shmchan_config cfg = t_config(1 << 20, 64); /* 64 MiB */
	char real[128], sparse[128], shm[300];
	struct shmchan_diag diag;
	shmchan_channel *ch, *other;
	struct shmchan_info info;
	void *hdr;
	int fd;

	t_name_buf(real, sizeof(real), "real");
	t_name_buf(sparse, sizeof(sparse), "sparse");
	CHECK_RC(shmchan_create(real, &cfg, &ch, NULL), 0);
	CHECK_RC(shmchan_info(ch, &info), 0);
	snprintf(shm, sizeof(shm), "/shmchan.%s", sparse);
	fd = shm_open(shm, O_RDWR | O_CREAT | O_EXCL, 0600);
	CHECK(fd >= 0);
	CHECK(ftruncate(fd, (off_t)info.total_size) == 0);
	hdr = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(hdr != MAP_FAILED);
	memcpy(hdr, (const void *)((uintptr_t)shmchan_slot_address(ch, 0) - info.data_offset), 4096);
	munmap(hdr, 4096);
	close(fd);
	CHECK_RC(shmchan_open(sparse, 0, &other, &diag), -SHMCHAN_ECORRUPT);
	CHECK_MSG(strstr(diag.message, "sparse") != NULL, "%s", diag.message);
	CHECK(shm_unlink(shm) == 0);
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

/* ---- readers map the slots read-only ---- */

#define FAULTED 42

static void on_segv(int sig)
{
	(void)sig;
	_exit(FAULTED); /* the write faulted (our own handler: a sanitizer's would report and exit 1) */
}

/* A forked child writes one byte at p: FAULTED if the write faulted, 0 if it went through. */
static int child_write(volatile uint8_t *p, uint8_t v)
{
	pid_t pid = t_fork();

	if (pid == 0) {
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_segv;
		sigemptyset(&sa.sa_mask);
		CHECK(sigaction(SIGSEGV, &sa, NULL) == 0);
		*p = v;
		t_peer_exit(0);
	}
	return t_wait(pid, 5000);
}

static void readers_map_slots_read_only(void)
{
	struct shmchan_config cfg = bcast_config(4096, 4, 4, SHMCHAN_POLICY_BLOCK);
	const char *name = t_name("ro");
	shmchan_channel *wch, *rch;
	shmchan_writer *w;
	shmchan_reader *r;
	struct shmchan_msg msg;
	volatile uint8_t *slot;

	CHECK_RC(shmchan_create(name, &cfg, &wch, NULL), 0);
	CHECK_RC(shmchan_open(name, 0, &rch, NULL), 0);
	CHECK_RC(shmchan_reader_attach(rch, &r), 0);
	CHECK_RC(shmchan_writer_attach(wch, &w), 0);
	CHECK_RC(shmchan_send(w, "hello", 5, 0), 0);
	CHECK_RC(shmchan_peek(r, 0, &msg), 0);
	slot = (volatile uint8_t *)msg.data;
	CHECK(child_write(slot, 'J') == FAULTED); /* through the reader's view */
	CHECK(memcmp((const void *)msg.data, "hello", 5) == 0);
	/* the writer's handle writes its slots */
	CHECK(child_write(shmchan_slot_address(wch, 1), 1) == 0);
	/* a writer attached to the reader's handle makes them writable for that handle */
	shmchan_writer_close(w);
	CHECK_RC(shmchan_writer_attach(rch, &w), 0);
	CHECK(child_write(slot + 1, 'E') == 0);
	CHECK_RC(shmchan_release(r, msg.pos), 0);
	shmchan_close(rch);
	CHECK_RC(shmchan_channel_unlink(wch), 0);
	shmchan_close(wch);
}

/* ---- a storm: an attacker writes random values into every field a peer controls ---- */

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static uint64_t nasty(uint64_t *s)
{
	static const uint64_t v[] = {0, 1, 2, 3, 4, 5, UINT32_MAX, (uint64_t)UINT32_MAX + 1, UINT64_MAX,
				     UINT64_MAX - 1, UINT64_C(1) << 63, (UINT64_C(1) << 63) - 1, 12345};
	uint64_t r = rnd(s);
	return r & 1 ? v[(r >> 1) % (sizeof(v) / sizeof(v[0]))] : rnd(s);
}

/* Every operation of a victim must end (the watchdog catches hangs) with a code from this list. */
static int expected(int rc)
{
	return rc >= 0 || rc == -SHMCHAN_ECORRUPT || rc == -EAGAIN || rc == -ETIMEDOUT || rc == -EBUSY ||
	       rc == -ENODATA || rc == -SHMCHAN_EPEERDEAD || rc == -SHMCHAN_EENDED || rc == -SHMCHAN_EPINNED ||
	       rc == -ESTALE || rc == -EMSGSIZE || rc == -EINVAL || rc == -SHMCHAN_ENOREADERS || rc == -EINTR ||
	       rc == -ENOENT;
}

#define STORM_CHECK(expr)                                                                          \
	do {                                                                                       \
		int rc__ = (expr);                                                                 \
		CHECK_MSG(expected(rc__), "%s gave %d (%s)", #expr, rc__, shmchan_strerror(rc__)); \
	} while (0)

static void victim(const char *name, int kind, int64_t until)
{
	uint64_t seed = (uint64_t)getpid() * 2654435761u | 1;
	shmchan_channel *ch = NULL;
	char buf[256];
	uint64_t len, version;

	while (t_now_ns() < until) {
		shmchan_reader *r = NULL;
		shmchan_writer *w = NULL;
		struct shmchan_msg msg;
		int rc;
		if (!ch) {
			rc = shmchan_open(name, T_MS(50), &ch, NULL);
			CHECK_MSG(rc == 0 || rc == -SHMCHAN_ECORRUPT || rc == -SHMCHAN_EBADMAGIC || rc == -SHMCHAN_EVERSION,
				  "open gave %d (%s)", rc, shmchan_strerror(rc));
			if (rc) {
				ch = NULL;
				continue;
			}
		}
		if (kind == SHMCHAN_KIND_STATE) {
			STORM_CHECK(shmchan_state_read(ch, buf, sizeof(buf), &len, &version));
			STORM_CHECK(shmchan_state_wait(ch, shmchan_state_version(ch), T_MS(2), &version));
			if (shmchan_writer_attach(ch, &w) == 0) {
				STORM_CHECK(shmchan_send(w, "state", 5, 0));
				shmchan_writer_close(w);
			}
		} else {
			rc = shmchan_reader_attach(ch, &r);
			STORM_CHECK(rc);
			if (rc == 0) {
				for (int i = 0; i < 8; i++) {
					rc = shmchan_peek(r, T_MS(1), &msg);
					STORM_CHECK(rc);
					if (rc == 0) {
						STORM_CHECK(shmchan_check(r, msg.pos));
						STORM_CHECK(shmchan_release(r, msg.pos));
					}
					STORM_CHECK(shmchan_recv(r, buf, sizeof(buf), &len, 0));
				}
				shmchan_reader_close(r);
			}
			if (shmchan_writer_attach(ch, &w) == 0) {
				for (int i = 0; i < 8; i++)
					STORM_CHECK(shmchan_send(w, "0123456789", 10, T_MS(1)));
				shmchan_writer_close(w);
			}
		}
		{
			struct shmchan_stats st;
			struct shmchan_place_info places[8];
			uint64_t first, end;
			STORM_CHECK(shmchan_stats(ch, &st));
			STORM_CHECK(shmchan_reader_places(ch, places, 8));
			STORM_CHECK(shmchan_inspect(ch, st.head - 1, buf, sizeof(buf), &len, &first, &end));
		}
		if (rnd(&seed) % 4 == 0) { /* a fresh handle now and then */
			shmchan_close(ch);
			ch = NULL;
		}
	}
	if (ch)
		shmchan_close(ch);
}

/* The fields a peer controls: everything after the identity line (which is validated at open). */
static void attack(struct t_map *m, int kind, uint64_t *seed)
{
	static const size_t fields64[] = {SHMCHAN_OFF_HEAD, SHMCHAN_OFF_TAIL, SHMCHAN_OFF_WRITER_GEN,
					  SHMCHAN_OFF_READER_GEN, SHMCHAN_OFF_SCAN_SEQ, SHMCHAN_OFF_FLOOR,
					  SHMCHAN_OFF_NEED, SHMCHAN_OFF_W_MESSAGES, SHMCHAN_OFF_R_MESSAGES};
	static const size_t fields32[] = {SHMCHAN_OFF_HEAD_WAKE, SHMCHAN_OFF_TAIL_WAKE, SHMCHAN_OFF_READER_WAITING,
					  SHMCHAN_OFF_WRITER_WAITING, SHMCHAN_OFF_WRITER_STATE,
					  SHMCHAN_OFF_WRITER_PID, SHMCHAN_OFF_READER_STATE, SHMCHAN_OFF_READER_PID};
	const uint64_t lens = 1024, cap = 4;
	uint64_t r = rnd(seed);

	switch (r % 4) {
	case 0:
		t_put64(m, fields64[(r >> 2) % (sizeof(fields64) / sizeof(fields64[0]))], nasty(seed));
		break;
	case 1:
		t_put32(m, fields32[(r >> 2) % (sizeof(fields32) / sizeof(fields32[0]))], (uint32_t)nasty(seed));
		break;
	case 2: /* the slot table: {seq, len} pairs (a length table for SPSC) */
		t_put64(m, (size_t)(lens + ((r >> 2) % (2 * cap)) * 8), nasty(seed));
		break;
	default:
		if (kind == SHMCHAN_KIND_BROADCAST) {
			static const size_t pf[] = {SHMCHAN_PLACE_STATE, SHMCHAN_PLACE_GEN, SHMCHAN_PLACE_CURSOR,
						    SHMCHAN_PLACE_LOST, SHMCHAN_PLACE_MESSAGES};
			size_t f = pf[(r >> 2) % 5];
			size_t off = place_off(m, (uint32_t)((r >> 5) % 4), f);
			if (f == SHMCHAN_PLACE_STATE)
				t_put32(m, off, (uint32_t)(nasty(seed) % 4));
			else
				t_put64(m, off, nasty(seed));
		}
		break;
	}
}

static void storm(int kind, uint32_t policy)
{
	struct shmchan_config cfg = kind == SHMCHAN_KIND_STATE ? board_config(64)
				    : kind == SHMCHAN_KIND_BROADCAST ? bcast_config(64, 4, 4, policy)
								     : t_config(64, 4);
	const char *name = t_name("storm");
	const int64_t until = t_now_ns() + T_MS(1500);
	shmchan_channel *ch;
	pid_t victims[3];
	struct t_map m;
	uint64_t seed = 0x9e3779b97f4a7c15u ^ (uint64_t)kind ^ ((uint64_t)policy << 8);

	CHECK_RC(shmchan_create(name, &cfg, &ch, NULL), 0);
	for (int i = 0; i < 3; i++) {
		victims[i] = t_fork();
		if (victims[i] == 0) {
			victim(name, kind, until);
			t_peer_exit(0);
		}
	}
	m = t_map_object(name);
	while (t_now_ns() < until) {
		for (int i = 0; i < 16; i++)
			attack(&m, kind, &seed);
		t_sleep_ms(1);
	}
	t_unmap(&m);
	for (int i = 0; i < 3; i++)
		CHECK_CHILD(victims[i], 30000, 0); /* not crashed, not hung (ASan on a busy machine is slow) */
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

static void storm_spsc(void)
{
	storm(SHMCHAN_KIND_SPSC, 0);
}

static void storm_broadcast_block(void)
{
	storm(SHMCHAN_KIND_BROADCAST, SHMCHAN_POLICY_BLOCK);
}

static void storm_broadcast_overwrite(void)
{
	storm(SHMCHAN_KIND_BROADCAST, SHMCHAN_POLICY_OVERWRITE);
}

static void storm_state(void)
{
	storm(SHMCHAN_KIND_STATE, 0);
}

static int open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	CHECK(d != NULL);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/*
 * shmchan_connect to a listener that never accepts (its backlog full) returned only when the
 * listener went away: a blocking connect(2). And a server answering something else than one
 * channel descriptor made it leak what it sent, one descriptor per attempt.
 */
static void connect_never_blocks_and_closes_a_bad_answer(void)
{
	struct sockaddr_un sa;
	struct shmchan_diag diag;
	shmchan_channel *ch = NULL;
	int lst, fillers[256], nfill = 0, before, i;
	int64_t t0;
	pid_t pid;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "/tmp/shmchan-ctest-%d.sock", (int)getpid());
	unlink(sa.sun_path);
	lst = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(lst >= 0);
	CHECK(bind(lst, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	CHECK(listen(lst, 0) == 0);
	while (nfill < 256) {
		int s = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);

		CHECK(s >= 0);
		if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
			close(s);
			break;
		}
		fillers[nfill++] = s;
	}
	t0 = t_now_ns();
	memset(&diag, 0, sizeof(diag));
	CHECK_RC(shmchan_connect(sa.sun_path, T_MS(300), 0, &ch, &diag), -ETIMEDOUT);
	CHECK_MSG(t_now_ns() - t0 < T_MS(3000), "took %.0f ms", t_ms(t_now_ns() - t0));
	for (i = 0; i < nfill; i++) {
		int c = accept(lst, NULL, NULL); /* empty the backlog for the server below */

		CHECK(c >= 0);
		close(c);
		close(fillers[i]);
	}

	/* a server that answers "X" and a descriptor, five times */
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		for (i = 0; i < 5; i++) {
			int c = accept(lst, NULL, NULL), devnull = open("/dev/null", O_RDONLY);
			char byte = 'X';
			struct iovec iov = {&byte, 1};
			union {
				char buf[CMSG_SPACE(sizeof(int))];
				struct cmsghdr align;
			} u;
			struct msghdr msg;
			struct cmsghdr *cm;

			memset(&msg, 0, sizeof(msg));
			msg.msg_iov = &iov;
			msg.msg_iovlen = 1;
			msg.msg_control = u.buf;
			msg.msg_controllen = sizeof(u.buf);
			cm = CMSG_FIRSTHDR(&msg);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cm), &devnull, sizeof(int));
			if (c < 0 || sendmsg(c, &msg, MSG_NOSIGNAL) != 1)
				_exit(1);
			close(devnull);
			close(c);
		}
		_exit(0);
	}
	close(lst);
	before = open_fds();
	for (i = 0; i < 5; i++) {
		memset(&diag, 0, sizeof(diag));
		CHECK_RC(shmchan_connect(sa.sun_path, T_MS(2000), 0, &ch, &diag), -EPROTO);
		CHECK_MSG(strstr(diag.message, "the server sent b'X' with 1 descriptor(s)") != NULL, "diag: %s",
			  diag.message);
	}
	CHECK_MSG(open_fds() == before, "%d descriptors open, %d before", open_fds(), before);
	{
		int st = 0;

		CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	unlink(sa.sun_path);
}

/* A child that sends SIGUSR1 to its parent after ms milliseconds. */
static pid_t signal_me_in(long ms)
{
	pid_t parent = getpid(), pid = t_fork();

	if (pid == 0) {
		t_sleep_ms(ms);
		kill(parent, SIGUSR1);
		t_peer_exit(0);
	}
	return pid;
}

/*
 * A binding runs its signal handlers (Ctrl-C) only once the C call returns: with
 * SHMCHAN_CONNECT_EINTR a signal ends shmchan_connect's wait for an answer with -EINTR at once, and
 * retrying a full backlog ends with -EINTR after a slice even with no signal (one caught between
 * two tries interrupts nothing); without the flag the signal is ridden out.
 */
static void connect_ends_on_a_signal_only_when_asked(void)
{
	struct sockaddr_un sa;
	struct sigaction act;
	shmchan_channel *ch = NULL;
	int lst, fillers[256], nfill = 0, i;
	int64_t t0;
	pid_t pid;

	memset(&act, 0, sizeof(act));
	act.sa_handler = on_usr1; /* no SA_RESTART, as a binding's handler */
	sigemptyset(&act.sa_mask);
	CHECK(sigaction(SIGUSR1, &act, NULL) == 0);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "/tmp/shmchan-ctest-eintr-%d.sock", (int)getpid());
	unlink(sa.sun_path);
	lst = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(lst >= 0);
	CHECK(bind(lst, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	CHECK(listen(lst, 0) == 0);

	/* a server that accepts and sends nothing: the wait for its answer */
	pid = signal_me_in(100);
	t0 = t_now_ns();
	CHECK_RC(shmchan_connect(sa.sun_path, T_MS(5000), SHMCHAN_CONNECT_EINTR, &ch, NULL), -EINTR);
	CHECK_MSG(t_now_ns() - t0 < T_MS(1000), "took %.0f ms", t_ms(t_now_ns() - t0));
	CHECK_CHILD(pid, 5000, 0);
	pid = signal_me_in(50);
	t0 = t_now_ns();
	CHECK_RC(shmchan_connect(sa.sun_path, T_MS(300), 0, &ch, NULL), -ETIMEDOUT);
	CHECK_MSG(t_now_ns() - t0 >= T_MS(290), "took %.0f ms", t_ms(t_now_ns() - t0));
	CHECK_CHILD(pid, 5000, 0);

	/* a backlog that stays full: the connect retried every millisecond */
	while (nfill < 256) {
		int s = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);

		CHECK(s >= 0);
		if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
			close(s);
			break;
		}
		fillers[nfill++] = s;
	}
	t0 = t_now_ns();
	CHECK_RC(shmchan_connect(sa.sun_path, T_MS(5000), SHMCHAN_CONNECT_EINTR, &ch, NULL), -EINTR);
	CHECK_MSG(t_now_ns() - t0 >= T_MS(95) && t_now_ns() - t0 < T_MS(1000), "took %.0f ms",
		  t_ms(t_now_ns() - t0));
	CHECK(ch == NULL);
	t0 = t_now_ns();
	CHECK_RC(shmchan_connect(sa.sun_path, T_MS(300), 0, &ch, NULL), -ETIMEDOUT);
	CHECK_MSG(t_now_ns() - t0 >= T_MS(290), "took %.0f ms", t_ms(t_now_ns() - t0));
	for (i = 0; i < nfill; i++)
		close(fillers[i]);
	close(lst);
	unlink(sa.sun_path);
}

int main(void)
{
	int failures = 0;

	t_init();
	failures += t_case("guard_table_grows_past_1024_mappings", guard_table_grows_past_1024_mappings, 60);
	failures += t_case("odd_scan_seq_join_has_deadline_and_signal_check",
			   odd_scan_seq_join_has_deadline_and_signal_check, 10);
	failures += t_case("fifo_dir_socket_symlink_at_the_name_are_refused",
			   fifo_dir_socket_symlink_at_the_name_are_refused, 10);
	failures += t_case("file_paths_refuse_symlinks_and_fifos", file_paths_refuse_symlinks_and_fifos, 10);
	failures += t_case("place_generation_max_never_looks_buried", place_generation_max_never_looks_buried, 10);
	failures += t_case("head_at_the_end_is_refused_at_attach", head_at_the_end_is_refused_at_attach, 10);
	failures += t_case("killed_sleeping_state_reader", killed_sleeping_state_reader, 20);
	failures += t_case("killed_sleeping_broadcast_reader", killed_sleeping_broadcast_reader, 20);
	failures += t_case("sparse_object_is_refused_before_mapping", sparse_object_is_refused_before_mapping, 10);
	failures += t_case("readers_map_slots_read_only", readers_map_slots_read_only, 10);
	failures += t_case("connect_never_blocks_and_closes_a_bad_answer",
			   connect_never_blocks_and_closes_a_bad_answer, 20);
	failures += t_case("connect_ends_on_a_signal_only_when_asked", connect_ends_on_a_signal_only_when_asked, 20);
	failures += t_case("storm_spsc", storm_spsc, 30);
	failures += t_case("storm_broadcast_block", storm_broadcast_block, 30);
	failures += t_case("storm_broadcast_overwrite", storm_broadcast_overwrite, 30);
	failures += t_case("storm_state", storm_state, 30);
	return t_done(failures);
}
