/* SPDX-License-Identifier: MIT */
/* Stale channels (every holder gone) are detected and reclaimed, live ones never; foreign objects are refused on open. */
#include <signal.h>
#include <sys/wait.h>

#include "testutil.h"

static void create_in_child_and_die(const char *name, int sig)
{
	pid_t pid = t_fork();

	if (pid == 0) {
		struct shmchan_config cfg = t_config(64, 4);
		shmchan_channel *ch;
		shmchan_writer *w;
		if (shmchan_create(name, &cfg, &ch, NULL) != 0 || shmchan_writer_attach(ch, &w) != 0)
			t_peer_exit(3);
		if (sig)
			raise(sig);
		t_peer_exit(0); /* exits without close or unlink */
	}
	CHECK(t_wait(pid, 5000) == (sig ? 128 + sig : 0));
}

static void live_channel_is_never_reclaimed(void)
{
	struct shmchan_config cfg = t_config(64, 4);
	const char *name = t_name("stale-live");
	shmchan_channel *ch;
	char path[300];

	CHECK_RC(shmchan_create(name, &cfg, &ch, NULL), 0);
	t_sleep_ms(150); /* past the freshness grace: only the lock says it is alive */
	CHECK_RC(shmchan_is_stale(name), 0);
	CHECK_RC(shmchan_reclaim_stale(name), -EBUSY);
	CHECK(t_exists(t_shm_path(path, sizeof(path), name)));
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

static void channel_held_only_by_an_opener_is_live(void)
{
	struct shmchan_config cfg = t_config(64, 4);
	const char *name = t_name("stale-opener");
	shmchan_channel *ch, *other;

	CHECK_RC(shmchan_create(name, &cfg, &ch, NULL), 0);
	CHECK_RC(shmchan_open(name, 1000000000, &other, NULL), 0);
	shmchan_close(ch); /* the creator leaves without unlinking; the opener still holds it */
	t_sleep_ms(150);
	CHECK_RC(shmchan_is_stale(name), 0);
	CHECK_RC(shmchan_reclaim_stale(name), -EBUSY);
	shmchan_close(other);
	CHECK_RC(shmchan_is_stale(name), 1);
	CHECK_RC(shmchan_reclaim_stale(name), 0);
	CHECK_RC(shmchan_is_stale(name), -ENOENT);
}

static void killed_creator_leaves_a_stale_channel(void)
{
	const int sigs[] = {0, SIGKILL};
	for (int i = 0; i < 2; i++) {
		const char *name = t_name(i ? "stale-killed" : "stale-exited");
		struct shmchan_config cfg = t_config(64, 4);
		shmchan_channel *ch;
		char path[300];

		create_in_child_and_die(name, sigs[i]);
		t_sleep_ms(150);
		CHECK_RC(shmchan_is_stale(name), 1);
		CHECK_RC(shmchan_create(name, &cfg, &ch, NULL), -EEXIST); /* never adopted */
		CHECK_RC(shmchan_reclaim_stale(name), 0);
		CHECK(!t_exists(t_shm_path(path, sizeof(path), name)));
		CHECK_RC(shmchan_create(name, &cfg, &ch, NULL), 0);
		CHECK_RC(shmchan_channel_unlink(ch), 0);
		shmchan_close(ch);
	}
}

static void fresh_unheld_object_is_not_yet_stale(void)
{
	const char *name = t_name("stale-fresh");
	char shm[300];
	int fd;

	snprintf(shm, sizeof(shm), "/shmchan.%s", name);
	fd = shm_open(shm, O_RDWR | O_CREAT | O_EXCL, 0600);
	CHECK(fd >= 0);
	close(fd);
	/* a creator may be between shm_open and its lock: too fresh to call it stale */
	CHECK_RC(shmchan_is_stale(name), 0);
	CHECK_RC(shmchan_reclaim_stale(name), -EBUSY);
	t_sleep_ms(150);
	CHECK_RC(shmchan_is_stale(name), 1);
	CHECK_RC(shmchan_reclaim_stale(name), 0);
	CHECK_RC(shmchan_reclaim_stale(name), -ENOENT);
	CHECK_RC(shmchan_reclaim_stale("bad/name"), -EINVAL);
}

static void foreign_objects_are_refused_unless_allowed(void)
{
	struct shmchan_config cfg = t_config(64, 4);
	const char *name = t_name("foreign");
	shmchan_channel *ch, *other;
	struct shmchan_diag diag;
	char path[300];

	cfg.mode = 0666;
	CHECK_RC(shmchan_create(name, &cfg, &ch, NULL), 0);
	CHECK_RC(shmchan_open(name, 100000000, &other, &diag), -EPERM);
	CHECK(strstr(diag.message, "writable by group or others") != NULL);
	CHECK_RC(shmchan_open_ex(name, 100000000, SHMCHAN_OPEN_ALLOW_FOREIGN, &other, NULL), 0);
	shmchan_close(other);
	if (geteuid() == 0) {
		/* owned by another user: only root can hand the object over to test this */
		CHECK(chmod(t_shm_path(path, sizeof(path), name), 0600) == 0);
		CHECK(chown(path, 65534, 65534) == 0);
		CHECK_RC(shmchan_open(name, 100000000, &other, &diag), -EPERM);
		CHECK(strstr(diag.message, "owned by uid 65534") != NULL);
		CHECK_RC(shmchan_open_ex(name, 100000000, SHMCHAN_OPEN_ALLOW_FOREIGN, &other, NULL), 0);
		shmchan_close(other);
	}
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

int main(void)
{
	int failures = 0;

	t_init();
	failures += t_case("live_channel_is_never_reclaimed", live_channel_is_never_reclaimed, 10);
	failures += t_case("channel_held_only_by_an_opener_is_live", channel_held_only_by_an_opener_is_live, 10);
	failures += t_case("killed_creator_leaves_a_stale_channel", killed_creator_leaves_a_stale_channel, 10);
	failures += t_case("fresh_unheld_object_is_not_yet_stale", fresh_unheld_object_is_not_yet_stale, 10);
	failures += t_case("foreign_objects_are_refused_unless_allowed", foreign_objects_are_refused_unless_allowed, 10);
	return t_done(failures);
}
