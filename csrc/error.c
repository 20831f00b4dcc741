/* SPDX-License-Identifier: MIT */
/* Error names, and the diagnostic sentences of a call and of a (poisoned) handle. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

const char *shmchan_strerror(int err)
{
	if (err < 0)
		err = -err;
	switch (err) {
	case 0:
		return "success";
	case SHMCHAN_EBADMAGIC:
		return "not a shmchan channel (bad magic)";
	case SHMCHAN_EVERSION:
		return "incompatible shmchan layout version";
	case SHMCHAN_ECORRUPT:
		return "channel header is corrupt";
	case SHMCHAN_EPEERDEAD:
		return "peer died while attached";
	case SHMCHAN_ENOTINIT:
		return "channel is not initialised";
	case SHMCHAN_EENDED:
		return "writer closed the channel and every message was received";
	case SHMCHAN_EPINNED:
		return "every slot is held by unreleased messages";
	case SHMCHAN_ENOREADERS:
		return "every reader place of the broadcast channel is taken";
	case SHMCHAN_ENOTREG:
		return "not a shmchan channel (not a regular file)";
	default:
		return strerror(err);
	}
}

void shmchan_diagf(struct shmchan_diag *diag, const char *fmt, ...)
{
	va_list ap;

	if (!diag)
		return;
	va_start(ap, fmt);
	vsnprintf(diag->message, sizeof(diag->message), fmt, ap);
	va_end(ap);
}

int shmchan_poison(shmchan_channel *ch, const char *fmt, ...)
{
	va_list ap;

	if (!ch->poisoned) {
		va_start(ap, fmt);
		vsnprintf(ch->diag, sizeof(ch->diag), fmt, ap);
		va_end(ap);
	}
	ch->poisoned = 1;
	return -SHMCHAN_ECORRUPT;
}

void shmchan_note(shmchan_channel *ch, const char *fmt, ...)
{
	va_list ap;

	if (ch->poisoned)
		return; /* keep the sentence that says why the handle is unusable */
	va_start(ap, fmt);
	vsnprintf(ch->diag, sizeof(ch->diag), fmt, ap);
	va_end(ap);
}

const char *shmchan_channel_diag(const shmchan_channel *ch)
{
	return ch->diag;
}
