/*
 * umirror's native addon: the few system calls Node does not expose. Mechanism only; the policy lives in
 * TypeScript (src/block/native.ts loads this, image-lock.ts and direct-io.ts use it).
 *
 * Image locks: open file description (OFD) byte-range locks, fcntl(2) F_OFD_SETLK and F_OFD_GETLK, the
 * locks qemu's file-posix driver takes on its images. An OFD lock belongs to the open file description,
 * not to the process: it is released when the last descriptor of that description is closed, so a kill -9
 * never leaves a stale lock (the kernel closes the descriptors), and two descriptions of one file conflict
 * even inside one process. (POSIX F_SETLK locks are dropped whenever the process closes any descriptor of
 * the file; flock(2) locks are invisible to qemu.) Both calls are non-blocking:
 *   setLock(fd, type, start, length)  -> 0, or the errno (EAGAIN/EACCES: a conflicting lock is held)
 *   testLock(fd, type, start, length) -> 0 when free, 1 when another description holds a conflicting
 *                                        lock, or -errno on failure
 *   type: 0 unlock, 1 read (shared), 2 write (exclusive).
 *
 * Direct I/O: O_DIRECT needs buffers at aligned memory addresses, which JavaScript cannot see.
 *   addressMod(view, align)  -> the address of view's first byte modulo align (a power of two)
 *   dioAlign(fd)             -> [memoryAlign, offsetAlign] from statx(STATX_DIOALIGN) (0, 0 when the file
 *                               system does not support direct I/O), or null when the kernel cannot say
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/stat.h>
#include <node_api.h>

#ifndef F_OFD_SETLK
#error "umirror needs open file description locks (F_OFD_SETLK, Linux 3.15 or later)"
#endif

#define LOCK_ARGS 4

static napi_value int_value(napi_env env, int32_t value) {
  napi_value result = NULL;
  napi_create_int32(env, value, &result);
  return result;
}

/* Reads (fd, type, start, length) into fl; on a bad argument throws and returns 0. */
static int read_lock_args(napi_env env, napi_callback_info info, int *fd, struct flock *fl) {
  size_t argc = LOCK_ARGS;
  napi_value argv[LOCK_ARGS];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != LOCK_ARGS) {
    napi_throw_type_error(env, NULL, "expected (fd, type, start, length)");
    return 0;
  }
  int32_t type = 0;
  int64_t start = 0;
  int64_t length = 0;
  if (napi_get_value_int32(env, argv[0], fd) != napi_ok || napi_get_value_int32(env, argv[1], &type) != napi_ok ||
      napi_get_value_int64(env, argv[2], &start) != napi_ok || napi_get_value_int64(env, argv[3], &length) != napi_ok) {
    napi_throw_type_error(env, NULL, "fd, type, start and length must be numbers");
    return 0;
  }
  if (*fd < 0 || type < 0 || type > 2 || start < 0 || length < 0) {
    napi_throw_range_error(env, NULL, "fd >= 0, type 0..2, start >= 0 and length >= 0");
    return 0;
  }
  memset(fl, 0, sizeof(*fl));
  fl->l_type = type == 0 ? F_UNLCK : type == 1 ? F_RDLCK : F_WRLCK;
  fl->l_whence = SEEK_SET;
  fl->l_start = (off_t)start;
  fl->l_len = (off_t)length;
  return 1;
}

static napi_value set_lock(napi_env env, napi_callback_info info) {
  int fd = -1;
  struct flock fl;
  if (!read_lock_args(env, info, &fd, &fl)) return NULL;
  int ret;
  do {
    ret = fcntl(fd, F_OFD_SETLK, &fl);
  } while (ret == -1 && errno == EINTR);
  return int_value(env, ret == 0 ? 0 : errno);
}

static napi_value test_lock(napi_env env, napi_callback_info info) {
  int fd = -1;
  struct flock fl;
  if (!read_lock_args(env, info, &fd, &fl)) return NULL;
  if (fl.l_type == F_UNLCK) {
    napi_throw_range_error(env, NULL, "testLock needs type 1 or 2");
    return NULL;
  }
  int ret;
  do {
    ret = fcntl(fd, F_OFD_GETLK, &fl);
  } while (ret == -1 && errno == EINTR);
  if (ret != 0) return int_value(env, -errno);
  return int_value(env, fl.l_type == F_UNLCK ? 0 : 1);
}

static napi_value address_mod(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2) {
    napi_throw_type_error(env, NULL, "expected (view, align)");
    return NULL;
  }
  bool is_typedarray = false;
  if (napi_is_typedarray(env, argv[0], &is_typedarray) != napi_ok || !is_typedarray) {
    napi_throw_type_error(env, NULL, "view must be a typed array");
    return NULL;
  }
  void *data = NULL;
  if (napi_get_typedarray_info(env, argv[0], NULL, NULL, &data, NULL, NULL) != napi_ok) {
    napi_throw_type_error(env, NULL, "cannot read the typed array");
    return NULL;
  }
  int32_t align = 0;
  if (napi_get_value_int32(env, argv[1], &align) != napi_ok || align <= 0 || (align & (align - 1)) != 0) {
    napi_throw_range_error(env, NULL, "align must be a positive power of two");
    return NULL;
  }
  return int_value(env, (int32_t)((uintptr_t)data & (uintptr_t)(align - 1)));
}

static napi_value dio_align(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, NULL, "expected (fd)");
    return NULL;
  }
  napi_value result = NULL;
  napi_get_null(env, &result);
#if defined(STATX_DIOALIGN) && defined(SYS_statx)
  struct statx stx;
  memset(&stx, 0, sizeof(stx));
  if (syscall(SYS_statx, fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) != 0) return result;
  if ((stx.stx_mask & STATX_DIOALIGN) == 0) return result;
  napi_create_array_with_length(env, 2, &result);
  napi_set_element(env, result, 0, int_value(env, (int32_t)stx.stx_dio_mem_align));
  napi_set_element(env, result, 1, int_value(env, (int32_t)stx.stx_dio_offset_align));
#endif
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor properties[] = {
    { "setLock", NULL, set_lock, NULL, NULL, NULL, napi_enumerable, NULL },
    { "testLock", NULL, test_lock, NULL, NULL, NULL, napi_enumerable, NULL },
    { "addressMod", NULL, address_mod, NULL, NULL, NULL, napi_enumerable, NULL },
    { "dioAlign", NULL, dio_align, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  if (napi_define_properties(env, exports, sizeof(properties) / sizeof(properties[0]), properties) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
