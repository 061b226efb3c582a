/* Logging: one line per event to stderr, `ts level msg key=value...`.
 * Never pass secrets (keys, tokens, PushMagic, passwords) to these calls. */
#ifndef ORCHARD_LOG_H
#define ORCHARD_LOG_H

typedef enum { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 } log_level_t;

void log_set_level(log_level_t level);
log_level_t log_get_level(void);
/* "debug", "info", "warn", "error" → 0; anything else → -1. */
int log_parse_level(const char *s, log_level_t *out);
void log_msg(log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
