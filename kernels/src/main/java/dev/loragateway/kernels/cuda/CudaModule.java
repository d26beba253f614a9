package dev.loragateway.kernels.cuda;

import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentMap;
import jcuda.driver.CUfunction;
import jcuda.driver.CUmodule;
import jcuda.driver.CUresult;
import jcuda.driver.JCudaDriver;

/**
 * A loaded module (a fatbin, cubin or PTX image) of a {@link CudaContext}, with its kernels looked
 * up by their {@code extern "C"} name on first use and cached. Unloaded when the context closes.
 */
public final class CudaModule {
    private final CudaContext context;
    private final CUmodule module;
    private final String what;
    private final ConcurrentMap<String, CUfunction> functions = new ConcurrentHashMap<>();

    CudaModule(CudaContext context, CUmodule module, String what) {
        this.context = context;
        this.module = module;
        this.what = what;
    }

    /** The kernel named {@code name}; throws naming the module when it has none of that name. */
    public CUfunction function(String name) {
        CUfunction f = functions.get(name);
        if (f != null) {
            return f;
        }
        return functions.computeIfAbsent(name, n -> {
            context.makeCurrent();
            CUfunction found = new CUfunction();
            int r = JCudaDriver.cuModuleGetFunction(found, module, n);
            if (r == CUresult.CUDA_ERROR_NOT_FOUND) {
                throw new IllegalArgumentException("kernel '" + n + "' is not in " + what
                    + " (kernels are looked up by their extern \"C\" name)");
            }
            CudaDevice.check(r, "cuModuleGetFunction(" + n + ")");
            return found;
        });
    }

    /** Where the image came from, e.g. the resource name. */
    public String what() {
        return what;
    }

    void unload() {
        JCudaDriver.cuModuleUnload(module);
        functions.clear();
    }
}
