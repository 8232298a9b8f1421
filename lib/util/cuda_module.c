/* Loading the CUDA module (util/cuda_module.h): dlopen once, keep the table or the reason. */
#define ZERO_LOG_MODULE "cuda"
#include "util/cuda_module.h"
#include "util/log.h"

#if HAVE_CUDA
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Written once under load_once, read-only afterwards. */
static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static const zero_cuda_api_t *loaded_api;
static char load_failure[1024];   /* why not, with every place tried */

/* Appends "; path: reason" to load_failure. */
static void note_failure(const char *path, const char *reason)
{
    size_t used = strlen(load_failure);
    snprintf(load_failure + used, sizeof(load_failure) - used, "%s%s: %s", used > 0 ? "; " : "", path,
             reason != NULL ? reason : "unknown error");
}

/* The table from the module at @p path, or NULL (the reason noted). The
 * handle stays open for the life of the process: the table points into it. */
static const zero_cuda_api_t *try_module(const char *path)
{
    typedef const zero_cuda_api_t *(*entry_fn)(uint32_t abi);
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    entry_fn entry;
    const zero_cuda_api_t *api;
    char reason[160];

    if (handle == NULL) {
        note_failure(path, dlerror());
        return NULL;
    }
    *(void **)&entry = dlsym(handle, ZERO_CUDA_MODULE_ENTRY);
    if (entry == NULL) {
        note_failure(path, "no symbol " ZERO_CUDA_MODULE_ENTRY " (not a libzero CUDA module)");
        dlclose(handle);
        return NULL;
    }
    api = entry(ZERO_CUDA_MODULE_ABI);
    if (api == NULL || api->abi != ZERO_CUDA_MODULE_ABI) {
        snprintf(reason, sizeof(reason), "module interface %u, libzero expects %u (a module from another build)",
                 api != NULL ? (unsigned)api->abi : 0u, (unsigned)ZERO_CUDA_MODULE_ABI);
        note_failure(path, reason);
        dlclose(handle);
        return NULL;
    }
    return api;
}

static void load_module(void)
{
    const char *env = getenv("ZERO_CUDA_MODULE");
    const char *from = ZERO_CUDA_MODULE_NAME;
    Dl_info self;
    char path[4096];

    if (env != NULL && env[0] != '\0') {
        /* An explicit choice is the only place looked at. */
        from = env;
        loaded_api = try_module(env);
    } else {
        /* any object of libzero names the file it was loaded from */
        if (dladdr(&load_once, &self) != 0 && self.dli_fname != NULL) {
            const char *slash = strrchr(self.dli_fname, '/');
            if (slash != NULL &&
                (size_t)(slash - self.dli_fname) + sizeof("/" ZERO_CUDA_MODULE_NAME) <= sizeof(path)) {
                snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - self.dli_fname), self.dli_fname,
                         ZERO_CUDA_MODULE_NAME);
                from = path;
                loaded_api = try_module(path);
            }
        }
        if (loaded_api == NULL) {
            from = ZERO_CUDA_MODULE_NAME;
            loaded_api = try_module(ZERO_CUDA_MODULE_NAME);
        }
    }
    if (loaded_api != NULL)
        ZERO_LOG_DEBUG("CUDA module loaded from %s", from);
}

const zero_cuda_api_t *zero_cuda_loaded(void)
{
    return loaded_api;
}

const zero_cuda_api_t *zero_cuda_probe(void)
{
    pthread_once(&load_once, load_module);
    if (loaded_api == NULL)
        ZERO_LOG_DEBUG("CUDA module " ZERO_CUDA_MODULE_NAME " not loaded (%s): no device support", load_failure);
    return loaded_api;
}

zero_status_t zero_cuda_require(const char *what)
{
    if (zero_cuda_probe() != NULL)
        return ZERO_OK;
    ZERO_LOG_ERROR("%s needs libzero's CUDA module " ZERO_CUDA_MODULE_NAME ", which could not be loaded (%s); "
                   "install it beside libzero.so (with CUDA and NCCL on the library path) or name it with "
                   "ZERO_CUDA_MODULE", what, load_failure);
    return ZERO_ERR_UNSUPPORTED;
}

#else /* !HAVE_CUDA */

zero_status_t zero_cuda_require(const char *what)
{
    ZERO_LOG_ERROR("%s needs CUDA, and libzero was built without it (reconfigure with -Dcuda=enabled)", what);
    return ZERO_ERR_UNSUPPORTED;
}

#endif
