// SPDX-License-Identifier: MIT
// shmchan-peer: the C++ peers behind the one command of the conformance contract
// (docs/conformance.md). `open NAME [--timeout S]` is answered here, through the public C API; the
// other roles run the peer programs built beside it:
//   shmchan-peer produce ARGS...   -> shmchan-producer ARGS...
//   shmchan-peer consume ARGS...   -> shmchan-consumer ARGS...
//   shmchan-peer bcast ARGS...     -> shmchan-bcast ARGS...
//   shmchan-peer state ARGS...     -> shmchan-state ARGS...
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unistd.h>
#include <vector>

#include "shmchan.h"

namespace {

[[noreturn]] void usage()
{
	std::fprintf(stderr, "usage: shmchan-peer produce|consume|bcast|state ARGS... | open NAME [--timeout S]\n");
	std::exit(2);
}

/* The contract's tags and exit codes for a refused open. */
int open_verdict(const char *name, double timeout_s)
{
	shmchan_channel *ch = nullptr;
	struct shmchan_diag diag;
	std::memset(&diag, 0, sizeof diag);
	const int64_t t = int64_t(timeout_s * 1e9);
	int rc = std::strncmp(name, "unix:", 5) == 0 ? shmchan_connect(name + 5, t, 0, &ch, &diag)
		 : std::strchr(name, '/')          ? shmchan_open_file(name, t, &ch, &diag)
						   : shmchan_open(name, t, &ch, &diag);
	if (rc == 0) {
		struct shmchan_info info;
		shmchan_info(ch, &info);
		const char *kinds[] = {"unknown", "spsc", "broadcast", "state"};
		std::printf("ok kind=%s slot_size=%llu capacity=%u\n", kinds[info.kind < 4 ? info.kind : 0],
			    (unsigned long long)info.slot_size, info.capacity);
		shmchan_close(ch);
		return 0;
	}
	const char *tag = "error";
	int code = 1;
	switch (-rc) {
	case SHMCHAN_EBADMAGIC:
	case SHMCHAN_EVERSION:
	case SHMCHAN_ENOTREG:
	case SHMCHAN_ENOTINIT: tag = "incompatible", code = 3; break;
	case SHMCHAN_ECORRUPT: tag = "corrupt", code = 6; break;
	case EPERM:
	case EACCES: tag = "permission", code = 7; break;
	case EBUSY: tag = "busy", code = 8; break;
	case ENOENT: tag = "not-found", code = 9; break;
	default: break;
	}
	std::printf("error %s: cannot open channel: %s (%s)\n", tag, diag.message, shmchan_strerror(rc));
	return code;
}

}  // namespace

int main(int argc, char **argv)
{
	if (argc < 3)
		usage();
	std::string role = argv[1];
	if (role == "open") {
		double timeout = 0.5;
		for (int i = 3; i < argc; i++) {
			if (std::strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
				timeout = std::atof(argv[++i]);
			else
				usage();
		}
		return open_verdict(argv[2], timeout);
	}
	const char *program = role == "produce" ? "shmchan-producer"
			      : role == "consume" ? "shmchan-consumer"
			      : role == "bcast"   ? "shmchan-bcast"
			      : role == "state"   ? "shmchan-state"
						  : nullptr;
	if (!program)
		usage();
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0)
		return 1;
	self[n] = 0;
	std::string path(self);
	path = path.substr(0, path.rfind('/') + 1) + program;
	std::vector<char *> args{const_cast<char *>(path.c_str())};
	for (int i = 2; i < argc; i++)
		args.push_back(argv[i]);
	args.push_back(nullptr);
	execv(path.c_str(), args.data());
	std::perror(path.c_str());
	return 1;
}
