/* Internal: the ustar header's layout, shared by the tar writer (tar_write.c) and reader
 * (tar.c). */
#ifndef CS_LIB_TAR_INT_H
#define CS_LIB_TAR_INT_H

#include <stdint.h>

/* ustar header layout (POSIX pax "ustar Interchange Format"). */
#define OFF_NAME 0
#define LEN_NAME 100
#define OFF_MODE 100
#define OFF_UID 108
#define OFF_GID 116
#define OFF_SIZE 124
#define OFF_MTIME 136
#define OFF_CHKSUM 148
#define OFF_TYPEFLAG 156
#define OFF_LINKNAME 157
#define LEN_LINKNAME 100
#define OFF_MAGIC 257
#define OFF_VERSION 263
#define OFF_DEVMAJOR 329
#define OFF_DEVMINOR 337
#define OFF_PREFIX 345
#define LEN_PREFIX 155

/* 11 octal digits: the largest size or time a 12-byte octal field holds is 8^11 - 1. */
#define OCTAL11_LIMIT (UINT64_C(1) << 33)

#endif
