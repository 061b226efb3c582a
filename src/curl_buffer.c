/* Collecting an HTTP response body with libcurl. */
#include "curl_buffer.h"

#include <stdlib.h>
#include <string.h>

size_t curl_buffer_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    curl_buffer_t *b = userdata;
    size_t n = size * nmemb;
    char *grown = realloc(b->data, b->len + n + 1);
    if (!grown)
        return 0; /* curl reports a write error */
    b->data = grown;
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

void curl_buffer_free(curl_buffer_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
}
