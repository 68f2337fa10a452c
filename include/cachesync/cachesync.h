/* cachesync: the whole public API of libcachesync. */
#ifndef CACHESYNC_CACHESYNC_H
#define CACHESYNC_CACHESYNC_H

#include <cachesync/error.h>
#include <cachesync/buf.h>
#include <cachesync/digest.h>
#include <cachesync/log.h>
#include <cachesync/reference.h>
#include <cachesync/manifest.h>
#include <cachesync/registry.h>
#include <cachesync/image.h>
#include <cachesync/store.h>
#include <cachesync/daemon.h>
#include <cachesync/pull.h>
#include <cachesync/source.h>
#include <cachesync/push.h>
#include <cachesync/doctor.h>
#include <cachesync/cachegraph.h>
#include <cachesync/audit.h>
#include <cachesync/login.h>

#endif
