/* SPDX-License-Identifier: MIT */
/* A peer truncating a named channel poisons it (-SHMCHAN_ECORRUPT) instead of killing us with SIGBUS. */
#include <signal.h>
#include <sys/mman.h>

#include "testutil.h"

static void truncate_object(const char *name, off_t size)
{
	char shm[300];
	int fd;

	snprintf(shm, sizeof(shm), "/shmchan.%s", name);
	fd = shm_open(shm, O_RDWR, 0);
	CHECK(fd >= 0);
	CHECK(ftruncate(fd, size) == 0);
	close(fd);
}

static void reader_copy_out_is_guarded(void)
{
	struct shmchan_config cfg = t_config(100000, 4);
	const char *name = t_name("trunc-rd");
	shmchan_channel *ch;
	shmchan_writer *w;
	shmchan_reader *r;
	static char buf[100000];
	uint64_t len;

	CHECK_RC(shmchan_create(name, &cfg, &ch, NULL), 0);
	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	CHECK_RC(shmchan_reader_attach(ch, &r), 0);
	memset(buf, 7, sizeof(buf));
	CHECK_RC(shmchan_send(w, buf, sizeof(buf), 0), 0);
	truncate_object(name, 4096); /* header page stays, every slot goes */
	CHECK_RC(shmchan_recv(r, buf, sizeof(buf), &len, 0), -SHMCHAN_ECORRUPT);
	CHECK(strstr(shmchan_channel_diag(ch), "truncated") != NULL);
	CHECK_RC(shmchan_recv(r, buf, sizeof(buf), &len, 0), -SHMCHAN_ECORRUPT); /* poisoned for good */
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

static void whole_object_truncated(void)
{
	struct shmchan_config cfg = t_config(64, 4);
	const char *name = t_name("trunc-all");
	shmchan_channel *ch;
	shmchan_writer *w;
	shmchan_reader *r;
	struct shmchan_msg m;

	CHECK_RC(shmchan_create(name, &cfg, &ch, NULL), 0);
	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	CHECK_RC(shmchan_reader_attach(ch, &r), 0);
	CHECK_RC(shmchan_send(w, "x", 1, 0), 0);
	truncate_object(name, 0); /* even the header is gone */
	CHECK_RC(shmchan_peek(r, 0, &m), -SHMCHAN_ECORRUPT);
	CHECK_RC(shmchan_send(w, "y", 1, 0), -SHMCHAN_ECORRUPT);
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

static void writer_copy_in_is_guarded(void)
{
	struct shmchan_config cfg = t_config(100000, 4);
	const char *name = t_name("trunc-wr");
	shmchan_channel *ch;
	shmchan_writer *w;
	static char buf[100000];

	CHECK_RC(shmchan_create(name, &cfg, &ch, NULL), 0);
	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	truncate_object(name, 4096);
	CHECK_RC(shmchan_send(w, buf, sizeof(buf), 0), -SHMCHAN_ECORRUPT);
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

static void other_sigbus_still_kills(void)
{
	/* A SIGBUS outside any channel is not ours: the process dies of it as it would without us. */
	struct shmchan_config cfg = t_config(64, 4);
	const char *name = t_name("trunc-other");
	shmchan_channel *ch;
	pid_t pid;

	CHECK_RC(shmchan_create(name, &cfg, &ch, NULL), 0); /* installs the guard */
	pid = t_fork();
	if (pid == 0) {
		char path[] = "/tmp/shmchan-ctest-sigbus-XXXXXX";
		int fd = mkstemp(path);
		volatile char *p;
		if (fd < 0 || ftruncate(fd, 8192) != 0)
			t_peer_exit(3);
		p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		unlink(path);
		if (p == MAP_FAILED || ftruncate(fd, 0) != 0)
			t_peer_exit(4);
		p[4096] = 1; /* SIGBUS */
		t_peer_exit(5);
	}
#ifdef __SANITIZE_ADDRESS__
	/* ASan's own SIGBUS handler was there first: we hand the fault to it, it reports and exits 1 */
	CHECK(t_wait(pid, 5000) == 1);
#else
	CHECK(t_wait(pid, 5000) == 128 + SIGBUS);
#endif
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

int main(void)
{
	int failures = 0;

	t_init();
	failures += t_case("reader_copy_out_is_guarded", reader_copy_out_is_guarded, 10);
	failures += t_case("whole_object_truncated", whole_object_truncated, 10);
	failures += t_case("writer_copy_in_is_guarded", writer_copy_in_is_guarded, 10);
	failures += t_case("other_sigbus_still_kills", other_sigbus_still_kills, 10);
	return t_done(failures);
}
