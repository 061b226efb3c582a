/* Collecting an HTTP response body with libcurl (CLI and test clients). */
#ifndef ORCHARD_CURL_BUFFER_H
#define ORCHARD_CURL_BUFFER_H

#include <stddef.h>

typedef struct {
    char *data; /* NUL-terminated; NULL until something arrives */
    size_t len;
} curl_buffer_t;

/* CURLOPT_WRITEFUNCTION callback; CURLOPT_WRITEDATA is a curl_buffer_t *. */
size_t curl_buffer_write(char *ptr, size_t size, size_t nmemb, void *userdata);
void curl_buffer_free(curl_buffer_t *b);

#endif
