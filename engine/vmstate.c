/* vmstate.c: an internal snapshot's vmstate read from its qcow2 file (QEMU's docs/interop/qcow2.txt). */
#include "vmstate.h"
#include "qs_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define QCOW2_MAGIC "QFI\xfb"
#define MAX_SNAPSHOTS 65536u              /* QEMU's QCOW_MAX_SNAPSHOTS */
#define MAX_TABLE (64u << 20)             /* a snapshot table bigger than this is not QEMU's */
#define MAX_L1 (32u << 20)                /* QEMU's limit on an L1 table, in bytes */
#define OFFSET_MASK 0x00fffffffffffe00ull /* bits 9-55: L1 and L2 entries' offsets */
#define L2_COMPRESSED (1ull << 62)
#define L2_ZERO 1ull                      /* version 3: the cluster reads as zeros */
#define INCOMPAT_DIRTY (1ull << 0)        /* lazy refcounts: the tables read here are unaffected */
#define INCOMPAT_COMPRESSION (1ull << 3)  /* another compression type: compressed clusters are refused anyway */
#define COPY_CHUNK (1u << 20)

struct vmstate {
    int fd;
    char *file;
    unsigned cluster_bits;
    uint64_t base;       /* where the vmstate starts, as a guest offset */
    uint64_t size;
    uint64_t *l1;        /* the snapshot's L1 table, host byte order */
    uint32_t l1_size;
    uint64_t *l2;        /* the last L2 table read */
    uint64_t l2_offset;  /* its place in the file, 0: none */
};

static uint64_t be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint16_t be16(const unsigned char *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static int read_at(const struct vmstate *v, void *buf, size_t len, uint64_t off, struct qs_error **err)
{
    size_t got = 0;

    while (got < len) {
        ssize_t r = pread(v->fd, (char *)buf + got, len - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r < 0)
                qs_error_set_errno(err, QS_ERR_IO, errno, "cannot read '%s'", v->file);
            else
                qs_error_set(err, QS_ERR_INVALID, "'%s' ends before offset %llu: not a whole qcow2 image", v->file,
                             (unsigned long long)(off + len));
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

void vmstate_free(struct vmstate *v)
{
    if (!v)
        return;
    qs_close(v->fd);
    free(v->file);
    free(v->l1);
    free(v->l2);
    free(v);
}

uint64_t vmstate_size(const struct vmstate *v)
{
    return v->size;
}

/* Checks the header; fills the fields the snapshot table needs. */
static int header_read(struct vmstate *v, uint64_t *disk_size, uint32_t *nb, uint64_t *table,
                       struct qs_error **err)
{
    unsigned char h[104];
    uint32_t version;
    uint64_t incompat;

    if (read_at(v, h, 72, 0, err) < 0)
        return -1;
    if (memcmp(h, QCOW2_MAGIC, 4) != 0) {
        qs_error_set(err, QS_ERR_INVALID, "'%s' is not a qcow2 image", v->file);
        return -1;
    }
    version = be32(h + 4);
    v->cluster_bits = be32(h + 20);
    *disk_size = be64(h + 24);
    *nb = be32(h + 60);
    *table = be64(h + 64);
    if ((version != 2 && version != 3) || v->cluster_bits < 9 || v->cluster_bits > 21) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "'%s': qcow2 version %u with %u-bit clusters is not supported", v->file,
                     version, v->cluster_bits);
        return -1;
    }
    if (be32(h + 32) != 0) {
        qs_error_set(err, QS_ERR_UNSUPPORTED, "'%s' is encrypted", v->file);
        return -1;
    }
    if (version == 3) {
        if (read_at(v, h + 72, 32, 72, err) < 0)
            return -1;
        incompat = be64(h + 72);
        if (incompat & ~(INCOMPAT_DIRTY | INCOMPAT_COMPRESSION)) {
            qs_error_set(err, QS_ERR_UNSUPPORTED,
                         "'%s' uses qcow2 features qsnap does not read (incompatible bits 0x%llx: a corrupt image, "
                         "an external data file or extended L2 entries)",
                         v->file, (unsigned long long)incompat);
            return -1;
        }
    }
    if (*nb > MAX_SNAPSHOTS) {
        qs_error_set(err, QS_ERR_INVALID, "'%s' claims %u snapshots", v->file, *nb);
        return -1;
    }
    return 0;
}

int vmstate_open(const char *file, const char *tag, struct vmstate **out, struct qs_error **err)
{
    struct vmstate *v = qs_xcalloc(1, sizeof(*v));
    unsigned char *tab = NULL;
    uint64_t disk_size = 0, table = 0, l1_offset = 0, snap_disk = 0, vm_size = 0, span;
    uint32_t nb = 0, l1_size = 0, found = 0;
    size_t len = 0, off = 0;
    int ret = -1;

    *out = NULL;
    v->fd = open(file, O_RDONLY | O_CLOEXEC);
    v->file = qs_xstrdup(file);
    if (v->fd < 0) {
        qs_error_set_errno(err, errno == ENOENT ? QS_ERR_NOTFOUND : QS_ERR_IO, errno, "cannot open '%s'", file);
        goto out;
    }
    if (header_read(v, &disk_size, &nb, &table, err) < 0)
        goto out;
    /* entries of variable length, one after the other: each read on its own */
    for (uint32_t i = 0; i < nb; i++) {
        unsigned char fixed[40];
        uint32_t extra;
        uint16_t id_len, name_len;
        size_t rest;
        if (off > MAX_TABLE) {
            qs_error_set(err, QS_ERR_INVALID, "'%s': snapshot table too big", file);
            goto out;
        }
        if (read_at(v, fixed, sizeof(fixed), table + off, err) < 0)
            goto out;
        extra = be32(fixed + 36);
        id_len = be16(fixed + 12);
        name_len = be16(fixed + 14);
        if (extra > 1024) {
            qs_error_set(err, QS_ERR_INVALID, "'%s': malformed snapshot table", file);
            goto out;
        }
        rest = (size_t)extra + id_len + name_len;
        if (rest > len) {
            tab = qs_xrealloc(tab, rest);
            len = rest;
        }
        if (rest && read_at(v, tab, rest, table + off + 40, err) < 0)
            goto out;
        if (name_len == strlen(tag) && memcmp(tab + extra + id_len, tag, name_len) == 0) {
            found++;
            l1_offset = be64(fixed);
            l1_size = be32(fixed + 8);
            vm_size = be32(fixed + 32);
            snap_disk = disk_size;
            if (extra >= 8)
                vm_size = be64(tab);
            if (extra >= 16)
                snap_disk = be64(tab + 8);
        }
        off += (40 + rest + 7) & ~(size_t)7;
    }
    if (found == 0) {
        qs_error_set(err, QS_ERR_NOTFOUND, "internal snapshot '%s' not found in '%s'", tag, file);
        goto out;
    }
    if (found > 1) {
        qs_error_set(err, QS_ERR_INVALID, "'%s' holds %u internal snapshots named '%s'", file, found, tag);
        goto out;
    }
    if (vm_size == 0) {
        ret = 0; /* the tag holds no RAM here */
        goto out;
    }
    if ((uint64_t)l1_size * 8 > MAX_L1) {
        qs_error_set(err, QS_ERR_INVALID, "'%s': snapshot '%s' has an L1 table of %u entries", file, tag, l1_size);
        goto out;
    }
    /* the vmstate starts at the first L1 entry past the disk (QEMU's qcow2_vm_state_offset) */
    span = 1ull << (v->cluster_bits + v->cluster_bits - 3);
    v->base = (snap_disk + span - 1) / span * span;
    v->size = vm_size;
    v->l1_size = l1_size;
    v->l1 = qs_xcalloc((size_t)l1_size + 1, sizeof(uint64_t));
    if (l1_size && read_at(v, v->l1, (size_t)l1_size * 8, l1_offset, err) < 0)
        goto out;
    for (uint32_t i = 0; i < l1_size; i++)
        v->l1[i] = be64((const unsigned char *)&v->l1[i]);
    v->l2 = qs_xmalloc(1u << v->cluster_bits);
    *out = v;
    v = NULL;
    ret = 0;
out:
    free(tab);
    vmstate_free(v);
    return ret;
}

int vmstate_read(struct vmstate *v, void *buf, uint64_t pos, uint64_t len, struct qs_error **err)
{
    uint64_t csize = 1ull << v->cluster_bits, entries = csize / 8;

    if (pos > v->size || len > v->size - pos) {
        qs_error_set(err, QS_ERR_INVALID, "read past the vmstate's end in '%s'", v->file);
        return -1;
    }
    while (len > 0) {
        uint64_t g = v->base + pos, in = g & (csize - 1), n = csize - in, l1i, l2o, e;
        if (n > len)
            n = len;
        l1i = (g >> v->cluster_bits) / entries;
        l2o = l1i < v->l1_size ? v->l1[l1i] & OFFSET_MASK : 0;
        e = 0;
        if (l2o) {
            if (l2o != v->l2_offset) {
                if (read_at(v, v->l2, csize, l2o, err) < 0)
                    return -1;
                v->l2_offset = l2o;
            }
            e = be64((const unsigned char *)&v->l2[(g >> v->cluster_bits) % entries]);
        }
        if (e & L2_COMPRESSED) {
            qs_error_set(err, QS_ERR_UNSUPPORTED, "'%s': the vmstate has compressed clusters", v->file);
            return -1;
        }
        /* unallocated or zero: zeros (no backing file reaches past the disk's end) */
        if (!(e & OFFSET_MASK) || (e & L2_ZERO))
            memset(buf, 0, (size_t)n);
        else if (read_at(v, buf, (size_t)n, (e & OFFSET_MASK) + in, err) < 0)
            return -1;
        buf = (char *)buf + n;
        pos += n;
        len -= n;
    }
    return 0;
}

int vmstate_copy(struct vmstate *v, int fd, const volatile bool *stop, struct qs_error **err)
{
    char *buf = qs_xmalloc(COPY_CHUNK);
    bool sock = true;
    int ret = -1;

    for (uint64_t pos = 0; pos < v->size;) {
        uint64_t n = v->size - pos < COPY_CHUNK ? v->size - pos : COPY_CHUNK;
        if (stop && *stop) {
            qs_error_set(err, QS_ERR_CANCELLED, "the vmstate copy was stopped");
            goto out;
        }
        if (vmstate_read(v, buf, pos, n, err) < 0)
            goto out;
        for (uint64_t done = 0; done < n;) {
            ssize_t w = sock ? send(fd, buf + done, (size_t)(n - done), MSG_NOSIGNAL)
                             : write(fd, buf + done, (size_t)(n - done));
            if (w < 0 && errno == ENOTSOCK && sock) {
                sock = false;
                continue;
            }
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                qs_error_set_errno(err, errno == EPIPE || errno == ECONNRESET ? QS_ERR_DISCONNECTED : QS_ERR_IO, errno,
                                   "cannot pass the vmstate of '%s' on", v->file);
                goto out;
            }
            done += (uint64_t)w;
        }
        pos += n;
    }
    ret = 0;
out:
    free(buf);
    return ret;
}
