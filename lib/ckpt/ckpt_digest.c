/*
 * The metadata digest of a rank file (ckpt_digest.h): a walk over every
 * object of the file through the HDF5 API, one SHA-256 per object, stored as
 * the root attribute meta_digest and checked before anything is read.
 *
 * The walk reads what HDF5 decodes (types, shapes, values in their stored
 * byte order), not raw file bytes, so the digest does not depend on where
 * HDF5 put things: the writer hashes what it just wrote, the reader what it
 * is about to use, through the same code.
 */
#define ZERO_LOG_MODULE "ckpt"
#include "ckpt/ckpt_digest.h"

#include "util/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIGEST_HEADER "libzero-meta-digest sha256\n"
#define DIGEST_SELF "*"              /* the name of the last line: the list's own digest */
#define DIGEST_MAX_DEPTH 16          /* groups deeper than this are not ours (or a link cycle) */
#define DIGEST_VALUE_MAX ((size_t)1 << 30)   /* bigger stored values are refused (corrupt dataspace) */

typedef struct digest_item {
    char *name;                      /* "/@lr", "/partition@world_size", "/partition/params", "/shard/" */
    char hex[CKPT_SHA256_HEX + 1];
    int unreadable;                  /* HDF5 could not read it: it cannot match */
    int matched;                     /* check: a line of the stored list names it */
} digest_item_t;

typedef struct digest_walk {
    digest_item_t *items;
    size_t count, cap;
    char obj[1024];                  /* path of the object being walked ("/" for the root) */
    int depth;
    int out_of_memory;
} digest_walk_t;

/* ------------------------------------------------------------ canonical form */

static void h_u64(ckpt_sha256_t *s, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    ckpt_sha256_update(s, b, sizeof(b));
}

static void h_i64(ckpt_sha256_t *s, int64_t v) { h_u64(s, (uint64_t)v); }

static void h_str(ckpt_sha256_t *s, const char *str)
{
    size_t n = strlen(str);
    h_u64(s, n);
    ckpt_sha256_update(s, str, n);
}

/* A datatype as its class, size and the properties that change how its bytes
 * read (byte order, sign, padding, members), recursively. */
static void hash_type(ckpt_sha256_t *s, hid_t t, int depth)
{
    H5T_class_t cls = H5Tget_class(t);
    h_i64(s, cls);
    h_u64(s, H5Tget_size(t));
    if (depth > 4)
        return;
    switch (cls) {
    case H5T_INTEGER:
        h_i64(s, H5Tget_order(t));
        h_i64(s, H5Tget_sign(t));
        h_u64(s, H5Tget_precision(t));
        h_i64(s, H5Tget_offset(t));
        break;
    case H5T_FLOAT: {
        size_t spos = 0, epos = 0, esize = 0, mpos = 0, msize = 0;
        h_i64(s, H5Tget_order(t));
        h_u64(s, H5Tget_precision(t));
        h_i64(s, H5Tget_offset(t));
        h_u64(s, H5Tget_ebias(t));
        H5Tget_fields(t, &spos, &epos, &esize, &mpos, &msize);
        h_u64(s, spos);
        h_u64(s, epos);
        h_u64(s, esize);
        h_u64(s, mpos);
        h_u64(s, msize);
        break;
    }
    case H5T_STRING:
        h_i64(s, H5Tget_strpad(t));
        h_i64(s, H5Tget_cset(t));
        h_i64(s, H5Tis_variable_str(t));
        break;
    case H5T_COMPOUND: {
        int n = H5Tget_nmembers(t);
        h_i64(s, n);
        for (int i = 0; i < n; i++) {
            char *name = H5Tget_member_name(t, (unsigned)i);
            hid_t mt = H5Tget_member_type(t, (unsigned)i);
            h_str(s, name != NULL ? name : "");
            h_u64(s, H5Tget_member_offset(t, (unsigned)i));
            if (mt >= 0) {
                hash_type(s, mt, depth + 1);
                H5Tclose(mt);
            }
            if (name != NULL)
                H5free_memory(name);
        }
        break;
    }
    case H5T_ARRAY: {
        hsize_t dims[H5S_MAX_RANK] = {0};
        int nd = H5Tget_array_ndims(t);
        hid_t super = H5Tget_super(t);
        h_i64(s, nd);
        if (nd > 0 && nd <= H5S_MAX_RANK && H5Tget_array_dims2(t, dims) == nd)
            for (int i = 0; i < nd; i++)
                h_u64(s, dims[i]);
        if (super >= 0) {
            hash_type(s, super, depth + 1);
            H5Tclose(super);
        }
        break;
    }
    default:
        break;
    }
}

/* A dataspace as its kind and dimensions; returns its number of elements (-1: unusable). */
static int64_t hash_space(ckpt_sha256_t *s, hid_t space)
{
    hsize_t dims[H5S_MAX_RANK] = {0};
    int nd = H5Sget_simple_extent_ndims(space);
    h_i64(s, H5Sget_simple_extent_type(space));
    h_i64(s, nd);
    if (nd < 0 || nd > H5S_MAX_RANK || H5Sget_simple_extent_dims(space, dims, NULL) != nd)
        return -1;
    for (int i = 0; i < nd; i++)
        h_u64(s, dims[i]);
    return (int64_t)H5Sget_simple_extent_npoints(space);
}

/* Whether values of type @p t are plain bytes in the file (no pointers to follow). */
static int plain_bytes(hid_t t)
{
    H5T_class_t cls = H5Tget_class(t);
    if (cls == H5T_VLEN || cls == H5T_REFERENCE || (cls == H5T_STRING && H5Tis_variable_str(t) != 0))
        return 0;
    if (cls == H5T_COMPOUND) {
        for (int i = 0, n = H5Tget_nmembers(t); i < n; i++) {
            hid_t mt = H5Tget_member_type(t, (unsigned)i);
            int ok = mt >= 0 && plain_bytes(mt);
            if (mt >= 0)
                H5Tclose(mt);
            if (!ok)
                return 0;
        }
    } else if (cls == H5T_ARRAY) {
        hid_t super = H5Tget_super(t);
        int ok = super >= 0 && plain_bytes(super);
        if (super >= 0)
            H5Tclose(super);
        return ok;
    }
    return 1;
}

/* Type, shape and the stored bytes of an attribute (@p is_attr) or dataset.
 * Returns 0, or -1 when HDF5 cannot read it. */
static int hash_value(ckpt_sha256_t *s, hid_t obj, int is_attr, int with_value)
{
    hid_t ft = is_attr ? H5Aget_type(obj) : H5Dget_type(obj);
    hid_t sp = is_attr ? H5Aget_space(obj) : H5Dget_space(obj);
    int rc = -1;
    if (ft < 0 || sp < 0)
        goto out;
    hash_type(s, ft, 0);
    int64_t npoints = hash_space(s, sp);
    size_t size = H5Tget_size(ft);
    if (npoints < 0 || size == 0)
        goto out;
    if (!with_value || npoints == 0) {
        rc = 0;
    } else if (!plain_bytes(ft) || (uint64_t)npoints > DIGEST_VALUE_MAX / size) {
        rc = -1;   /* never written by libzero, or a garbled dataspace */
    } else {
        size_t bytes = (size_t)npoints * size;
        void *buf = zero_malloc(bytes);
        if (buf != NULL) {
            /* read in the stored type: no conversion, the file's bytes */
            herr_t r = is_attr ? H5Aread(obj, ft, buf) : H5Dread(obj, ft, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
            if (r >= 0) {
                h_u64(s, bytes);
                ckpt_sha256_update(s, buf, bytes);
                rc = 0;
            }
            zero_free(buf);
        }
    }
out:
    if (sp >= 0)
        H5Sclose(sp);
    if (ft >= 0)
        H5Tclose(ft);
    return rc;
}

/* A dataset's storage: layout, chunk shape and filter pipeline. */
static void hash_storage(ckpt_sha256_t *s, hid_t dset)
{
    hid_t dcpl = H5Dget_create_plist(dset);
    if (dcpl < 0) {
        h_i64(s, -1);
        return;
    }
    H5D_layout_t layout = H5Pget_layout(dcpl);
    h_i64(s, layout);
    if (layout == H5D_CHUNKED) {
        hsize_t cdims[H5S_MAX_RANK] = {0};
        int nd = H5Pget_chunk(dcpl, H5S_MAX_RANK, cdims);
        h_i64(s, nd);
        for (int i = 0; i < nd && i < H5S_MAX_RANK; i++)
            h_u64(s, cdims[i]);
    }
    int nf = H5Pget_nfilters(dcpl);
    h_i64(s, nf);
    for (int i = 0; i < nf; i++) {
        unsigned flags = 0;
        size_t nelmts = 0;
        h_i64(s, H5Pget_filter2(dcpl, (unsigned)i, &flags, &nelmts, NULL, 0, NULL, NULL));
    }
    H5Pclose(dcpl);
}

/* ------------------------------------------------------------ the walk */

static void add_item(digest_walk_t *w, const char *name, ckpt_sha256_t *s, int unreadable)
{
    unsigned char d[CKPT_SHA256_BYTES];
    digest_item_t *it;
    if (w->count == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 64;
        digest_item_t *grown = zero_realloc(w->items, cap * sizeof(*grown));
        if (grown == NULL) {
            w->out_of_memory = 1;
            return;
        }
        w->items = grown;
        w->cap = cap;
    }
    it = &w->items[w->count];
    memset(it, 0, sizeof(*it));
    if ((it->name = zero_strdup(name)) == NULL) {
        w->out_of_memory = 1;
        return;
    }
    ckpt_sha256_final(s, d);
    ckpt_sha256_to_hex(d, it->hex);
    it->unreadable = unreadable;
    w->count++;
}

static void walk_clear(digest_walk_t *w)
{
    for (size_t i = 0; i < w->count; i++)
        zero_free(w->items[i].name);
    zero_free(w->items);
    memset(w, 0, sizeof(*w));
}

/* "<obj>@<attr>" or "<obj>/<child>" into @p buf; 0, or -1 when it does not fit. */
static int item_name(char *buf, size_t size, const char *obj, char sep, const char *name)
{
    int n;
    if (sep == '/' && strcmp(obj, "/") == 0)
        n = snprintf(buf, size, "/%s", name);
    else
        n = snprintf(buf, size, "%s%c%s", obj, sep, name);
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

static herr_t attr_cb(hid_t loc, const char *name, const H5A_info_t *info, void *data)
{
    digest_walk_t *w = data;
    char full[1200];
    ckpt_sha256_t s;
    hid_t a;
    int bad = 1;
    (void)info;
    if (w->depth == 0 && strcmp(name, CKPT_META_DIGEST_ATTR) == 0)
        return 0;   /* the list does not cover itself (its last line does) */
    if (item_name(full, sizeof(full), w->obj, '@', name) != 0)
        snprintf(full, sizeof(full), "%s@(name too long)", w->obj);
    ckpt_sha256_init(&s);
    h_str(&s, full);
    if ((a = H5Aopen(loc, name, H5P_DEFAULT)) >= 0) {
        bad = hash_value(&s, a, 1, 1) != 0;
        H5Aclose(a);
    }
    add_item(w, full, &s, bad);
    return w->out_of_memory ? -1 : 0;
}

static void walk_object(digest_walk_t *w, hid_t obj, int is_group);

static herr_t link_cb(hid_t group, const char *name, const H5L_info_t *info, void *data)
{
    digest_walk_t *w = data;
    char full[1200], saved[sizeof(w->obj)];
    ckpt_sha256_t s;
    hid_t o;

    if (item_name(full, sizeof(full), w->obj, '/', name) != 0 || strlen(full) + 2 > sizeof(w->obj)) {
        ckpt_sha256_init(&s);
        add_item(w, "(a name too long)", &s, 1);
        return w->out_of_memory ? -1 : 0;
    }
    ckpt_sha256_init(&s);
    h_str(&s, full);
    if (info->type != H5L_TYPE_HARD || w->depth >= DIGEST_MAX_DEPTH ||
        (o = H5Oopen(group, name, H5P_DEFAULT)) < 0) {
        h_i64(&s, info->type);
        add_item(w, full, &s, info->type == H5L_TYPE_HARD);   /* soft links are never written: a plain mismatch */
        return w->out_of_memory ? -1 : 0;
    }
    snprintf(saved, sizeof(saved), "%s", w->obj);
    snprintf(w->obj, sizeof(w->obj), "%s", full);
    w->depth++;
    switch (H5Iget_type(o)) {
    case H5I_GROUP: {
        char gname[1210];
        snprintf(gname, sizeof(gname), "%s/", full);   /* a group's own item: that it exists */
        ckpt_sha256_init(&s);
        h_str(&s, gname);
        add_item(w, gname, &s, 0);
        walk_object(w, o, 1);
        break;
    }
    case H5I_DATASET: {
        /* the shard tensors carry Fletcher-32 per chunk: their shape and storage
         * are covered here, their values by the chunk checksums */
        int with_value = strncmp(full, "/shard/", 7) != 0;
        int bad;
        h_i64(&s, H5I_DATASET);
        bad = hash_value(&s, o, 0, with_value) != 0;
        hash_storage(&s, o);
        add_item(w, full, &s, bad);
        walk_object(w, o, 0);
        break;
    }
    default:
        h_i64(&s, H5Iget_type(o));
        add_item(w, full, &s, 0);
        break;
    }
    w->depth--;
    snprintf(w->obj, sizeof(w->obj), "%s", saved);
    H5Oclose(o);
    return w->out_of_memory ? -1 : 0;
}

/* Items of @p obj's attributes (by name), then of its children (by name). */
static void walk_object(digest_walk_t *w, hid_t obj, int is_group)
{
    hsize_t idx = 0;
    if (H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, &idx, attr_cb, w) < 0 && !w->out_of_memory) {
        char full[1200];
        ckpt_sha256_t s;
        snprintf(full, sizeof(full), "%s@(attribute list)", w->obj);
        ckpt_sha256_init(&s);
        add_item(w, full, &s, 1);
    }
    idx = 0;
    if (is_group && !w->out_of_memory && H5Literate(obj, H5_INDEX_NAME, H5_ITER_INC, &idx, link_cb, w) < 0 &&
        !w->out_of_memory) {
        char full[1200];
        ckpt_sha256_t s;
        snprintf(full, sizeof(full), "%s/(member list)", strcmp(w->obj, "/") == 0 ? "" : w->obj);
        ckpt_sha256_init(&s);
        add_item(w, full, &s, 1);
    }
}

static int walk_file(hid_t file, digest_walk_t *w, const char *path, ckpt_err_t *err)
{
    hid_t root = H5Gopen2(file, "/", H5P_DEFAULT);
    memset(w, 0, sizeof(*w));
    snprintf(w->obj, sizeof(w->obj), "/");
    if (root < 0) {
        ckpt_fail_h5(err, ZERO_ERR_CHECKPOINT, "%s: cannot open the root group (corrupt file)", path);
        return -1;
    }
    walk_object(w, root, 1);
    H5Gclose(root);
    if (w->out_of_memory) {
        ckpt_fail(err, ZERO_ERR_NO_MEMORY, "%s: out of memory hashing the metadata", path);
        walk_clear(w);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ the list */

int ckpt_meta_digest_write(hid_t file, const char *path, ckpt_err_t *err)
{
    digest_walk_t w;
    char *text = NULL, self[CKPT_SHA256_HEX + 1];
    size_t len = strlen(DIGEST_HEADER), used;
    hid_t t = -1, space = -1, attr = -1;
    herr_t rc = -1;

    if (walk_file(file, &w, path, err) != 0)
        return -1;
    for (size_t i = 0; i < w.count; i++) {
        if (w.items[i].unreadable || strchr(w.items[i].name, '\n') != NULL) {
            ckpt_fail(err, ZERO_ERR_HDF5, "%s: cannot hash %s for attribute " CKPT_META_DIGEST_ATTR, path,
                      w.items[i].name);
            walk_clear(&w);
            return -1;
        }
        len += CKPT_SHA256_HEX + 2 + strlen(w.items[i].name);
    }
    len += CKPT_SHA256_HEX + 2 + strlen(DIGEST_SELF);
    if ((text = zero_malloc(len + 1)) == NULL) {
        ckpt_fail(err, ZERO_ERR_NO_MEMORY, "%s: out of memory for attribute " CKPT_META_DIGEST_ATTR, path);
        walk_clear(&w);
        return -1;
    }
    used = (size_t)sprintf(text, "%s", DIGEST_HEADER);
    for (size_t i = 0; i < w.count; i++)
        used += (size_t)sprintf(text + used, "%s %s\n", w.items[i].hex, w.items[i].name);
    ckpt_sha256_hex(text, used, self);
    used += (size_t)sprintf(text + used, "%s %s\n", self, DIGEST_SELF);
    walk_clear(&w);

    if ((t = H5Tcopy(H5T_C_S1)) >= 0 && H5Tset_size(t, used + 1) >= 0 && H5Tset_strpad(t, H5T_STR_NULLTERM) >= 0 &&
        (space = H5Screate(H5S_SCALAR)) >= 0 &&
        (attr = H5Acreate2(file, CKPT_META_DIGEST_ATTR, t, space, H5P_DEFAULT, H5P_DEFAULT)) >= 0)
        rc = H5Awrite(attr, t, text);
    if (rc < 0)
        ckpt_fail_h5(err, ZERO_ERR_HDF5, "%s: cannot write attribute " CKPT_META_DIGEST_ATTR, path);
    if (attr >= 0)
        H5Aclose(attr);
    if (space >= 0)
        H5Sclose(space);
    if (t >= 0)
        H5Tclose(t);
    zero_free(text);
    return rc < 0 ? -1 : 0;
}

/* The stored list as text (zero_malloc'd), or NULL. */
static char *read_list(hid_t file)
{
    hid_t a = H5Aopen(file, CKPT_META_DIGEST_ATTR, H5P_DEFAULT), ft = -1, mt = -1;
    size_t size = 0;
    char *buf = NULL;
    if (a < 0)
        return NULL;
    if ((ft = H5Aget_type(a)) >= 0 && H5Tget_class(ft) == H5T_STRING && H5Tis_variable_str(ft) == 0 &&
        (size = H5Tget_size(ft)) > 0 && size < ((size_t)1 << 26) && (buf = zero_malloc(size + 1)) != NULL &&
        (mt = H5Tcopy(H5T_C_S1)) >= 0 && H5Tset_size(mt, size) >= 0 && H5Tset_strpad(mt, H5T_STR_NULLTERM) >= 0 &&
        H5Aread(a, mt, buf) >= 0) {
        buf[size] = '\0';
    } else {
        zero_free(buf);
        buf = NULL;
    }
    if (mt >= 0)
        H5Tclose(mt);
    if (ft >= 0)
        H5Tclose(ft);
    H5Aclose(a);
    return buf;
}

static int is_hex_digest(const char *s)
{
    for (int i = 0; i < CKPT_SHA256_HEX; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return s[CKPT_SHA256_HEX] == ' ';
}

/* How an item is named in messages. */
static void describe(const char *item, char *buf, size_t size)
{
    const char *at = strchr(item, '@');
    size_t n = strlen(item);
    if (at != NULL)
        snprintf(buf, size, "attribute '%s' of %.*s", at + 1, (int)(at - item), item);
    else if (n > 1 && item[n - 1] == '/')
        snprintf(buf, size, "group %.*s", (int)(n - 1), item);
    else
        snprintf(buf, size, "dataset %s", item);
}

int ckpt_meta_digest_check(hid_t file, const char *path, ckpt_err_t *err)
{
    char *text = read_list(file), *line, *end, self[CKPT_SHA256_HEX + 1], what[1400];
    digest_walk_t w;
    int problems = 0;
    size_t header = strlen(DIGEST_HEADER);
    const char *last;

    if (text == NULL) {
        ckpt_fail_h5(err, ZERO_ERR_CHECKPOINT, "%s: attribute " CKPT_META_DIGEST_ATTR " is missing or unreadable "
                     "(corrupt file)", path);
        return 1;
    }
    /* the last line "<hex> *" covers every byte before it */
    last = NULL;
    for (char *p = text; (p = strchr(p, '\n')) != NULL && p[1] != '\0'; p++)
        last = p + 1;
    if (strncmp(text, DIGEST_HEADER, header) != 0 || last == NULL || strlen(last) != CKPT_SHA256_HEX + 3 ||
        !is_hex_digest(last) || strcmp(last + CKPT_SHA256_HEX, " " DIGEST_SELF "\n") != 0) {
        ckpt_fail(err, ZERO_ERR_CHECKPOINT, "%s: attribute " CKPT_META_DIGEST_ATTR " is corrupt (not a digest list)",
                  path);
        zero_free(text);
        return 1;
    }
    ckpt_sha256_hex(text, (size_t)(last - text), self);
    if (memcmp(self, last, CKPT_SHA256_HEX) != 0) {
        ckpt_fail(err, ZERO_ERR_CHECKPOINT, "%s: attribute " CKPT_META_DIGEST_ATTR " is corrupt (its own digest "
                  "does not match)", path);
        zero_free(text);
        return 1;
    }
    if (walk_file(file, &w, path, err) != 0) {
        zero_free(text);
        return 1;
    }
    /* every listed item: present and equal; then whatever was not listed */
    for (line = text + header; line < last; line = end + 1) {
        const char *name = line + CKPT_SHA256_HEX + 1;
        size_t i;
        end = strchr(line, '\n');
        *end = '\0';
        if (!is_hex_digest(line)) {
            ckpt_fail(err, ZERO_ERR_CHECKPOINT, "%s: attribute " CKPT_META_DIGEST_ATTR " has a malformed line",
                      path);
            problems++;
            continue;
        }
        for (i = 0; i < w.count && (w.items[i].matched || strcmp(w.items[i].name, name) != 0); i++)
            ;
        describe(name, what, sizeof(what));
        if (i == w.count) {
            ckpt_fail(err, ZERO_ERR_CHECKPOINT, "%s: %s is missing (its name or header is damaged: corrupt file)",
                      path, what);
            problems++;
            continue;
        }
        w.items[i].matched = 1;
        if (w.items[i].unreadable) {
            ckpt_fail(err, ZERO_ERR_CHECKPOINT, "%s: %s cannot be read (corrupt file)", path, what);
            problems++;
        } else if (memcmp(w.items[i].hex, line, CKPT_SHA256_HEX) != 0) {
            ckpt_fail(err, ZERO_ERR_CHECKPOINT, "%s: %s does not match its digest in " CKPT_META_DIGEST_ATTR
                      " (corrupt file)", path, what);
            problems++;
        }
    }
    for (size_t i = 0; i < w.count; i++) {
        if (w.items[i].matched)
            continue;
        describe(w.items[i].name, what, sizeof(what));
        ckpt_fail(err, ZERO_ERR_CHECKPOINT, "%s: %s is not listed in " CKPT_META_DIGEST_ATTR " (corrupt file)", path,
                  what);
        problems++;
    }
    walk_clear(&w);
    zero_free(text);
    return problems;
}
