/* A JSON scanner: enough to validate a message and find a top-level field. */
#include "monitor.h"


static const char *ws(const char *p, const char *e) {
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static const char *skip_value(const char *p, const char *e, int depth);

static const char *skip_string(const char *p, const char *e) {
    if (p >= e || *p != '"')
        return NULL;
    for (p++; p < e; p++) {
        if (*p == '\\') {
            p++;
            continue;
        }
        if (*p == '"')
            return p + 1;
        if ((unsigned char)*p < 0x20)
            return NULL;
    }
    return NULL;
}

static const char *skip_literal(const char *p, const char *e, const char *word) {
    size_t n = strlen(word);
    return (size_t)(e - p) >= n && memcmp(p, word, n) == 0 ? p + n : NULL;
}

static const char *skip_value(const char *p, const char *e, int depth) {
    p = ws(p, e);
    if (p >= e || depth > 64)
        return NULL;
    if (*p == '"')
        return skip_string(p, e);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        int object = *p == '{';
        p = ws(p + 1, e);
        if (p < e && *p == close)
            return p + 1;
        for (;;) {
            if (object) {
                p = skip_string(ws(p, e), e);
                if (!p)
                    return NULL;
                p = ws(p, e);
                if (p >= e || *p != ':')
                    return NULL;
                p++;
            }
            p = skip_value(p, e, depth + 1);
            if (!p)
                return NULL;
            p = ws(p, e);
            if (p < e && *p == ',') {
                p++;
                continue;
            }
            return p < e && *p == close ? p + 1 : NULL;
        }
    }
    if (*p == 't')
        return skip_literal(p, e, "true");
    if (*p == 'f')
        return skip_literal(p, e, "false");
    if (*p == 'n')
        return skip_literal(p, e, "null");
    if (*p == 'N')
        return skip_literal(p, e, "NaN");
    if (*p == 'I')
        return skip_literal(p, e, "Infinity");
    if (*p == '-' && e - p > 1 && p[1] == 'I')
        return skip_literal(p, e, "-Infinity");
    const char *start = p;
    while (p < e && (isdigit((unsigned char)*p) || *p == '-' || *p == '+' || *p == '.' ||
                     *p == 'e' || *p == 'E'))
        p++;
    return p > start ? p : NULL;
}

/* A whole message: one JSON object and whitespace. Returns its span without the whitespace. */
int json_object(const char *p, const char *e, const char **vs, const char **ve) {
    p = ws(p, e);
    if (p >= e || *p != '{')
        return 0;
    const char *end = skip_value(p, e, 0);
    if (!end || ws(end, e) != e)
        return 0;
    *vs = p;
    *ve = end;
    return 1;
}

/* The raw value of a top-level key of a valid object; 0 when it has none. */
int json_field(const char *p, const char *e, const char *key, const char **vs,
                      const char **ve) {
    size_t klen = strlen(key);
    p = ws(p, e) + 1;
    for (;;) {
        p = ws(p, e);
        if (p >= e || *p != '"')
            return 0;
        const char *kend = skip_string(p, e);
        int match = (size_t)(kend - p) == klen + 2 && memcmp(p + 1, key, klen) == 0;
        p = ws(kend, e) + 1; /* past ':' */
        p = ws(p, e);
        const char *vend = skip_value(p, e, 0);
        if (match) {
            *vs = p;
            *ve = vend;
            return 1;
        }
        p = ws(vend, e);
        if (p >= e || *p != ',')
            return 0;
        p++;
    }
}

int field_is(const char *p, const char *e, const char *key, const char *raw) {
    const char *vs, *ve;
    size_t n = strlen(raw);
    return json_field(p, e, key, &vs, &ve) && (size_t)(ve - vs) == n && memcmp(vs, raw, n) == 0;
}

int field_ll(const char *p, const char *e, const char *key, long long *out) {
    const char *vs, *ve;
    char num[32];
    if (!json_field(p, e, key, &vs, &ve) || ve - vs >= (long)sizeof num)
        return 0;
    memcpy(num, vs, ve - vs);
    num[ve - vs] = 0;
    char *stop;
    errno = 0;
    long long v = strtoll(num, &stop, 10);
    if (errno || stop == num || (*stop && *stop != '.' && *stop != 'e' && *stop != 'E'))
        return 0;
    *out = v;
    return 1;
}

char *dup_span(const char *s, const char *e) {
    char *copy = malloc(e - s + 1);
    if (copy) {
        memcpy(copy, s, e - s);
        copy[e - s] = 0;
    }
    return copy;
}

/* A JSON string literal of text, into out (size at least 6 * len + 3). */
void json_quote(char *out, const char *text) {
    char *o = out;
    *o++ = '"';
    for (const unsigned char *t = (const unsigned char *)text; *t; t++) {
        if (*t == '"' || *t == '\\') {
            *o++ = '\\';
            *o++ = *t;
        } else if (*t < 0x20) {
            o += sprintf(o, "\\u%04x", *t);
        } else {
            *o++ = *t;
        }
    }
    *o++ = '"';
    *o = 0;
}
