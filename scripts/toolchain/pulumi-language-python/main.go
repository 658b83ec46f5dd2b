// Command pulumi-language-python is hyperfleet's small stand-in for Pulumi's Python language host,
// for machines where neither Pulumi's installer nor the host's Go module can be fetched.
//
// The engine starts a language host with its own gRPC address as the only argument, reads the port
// the host prints, and calls Run; Run starts the Python program through the
// `pulumi-language-python-exec` script (shipped in the pulumi sdk/v3 module, installed beside this
// binary), which connects the program to the engine's resource monitor. This host implements what
// `pulumi preview/up/destroy/refresh` of a Python project need (Handshake, GetPluginInfo,
// GetRequiredPackages/Plugins, Run, About) and answers every other call (new project templates,
// `pulumi install`, code generation, policy packs, debugging) with "unimplemented".
//
// The Python interpreter is chosen like Pulumi's own host does, through the sdk's toolchain package:
// the project's `runtime.options.virtualenv` (pip), or a uv.lock / poetry.lock, else python3 on PATH.
// The `typechecker` option is not supported.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	pbempty "google.golang.org/protobuf/types/known/emptypb"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"github.com/pulumi/pulumi/sdk/v3/python/toolchain"
	"google.golang.org/grpc"
)

// version is set at link time to the pinned Pulumi version.
var version = "0.0.0-dev"

// exitAfterUserMessage is the exit code with which the exec script says it already showed the error.
const exitAfterUserMessage = 32

type host struct {
	pulumirpc.UnimplementedLanguageRuntimeServer

	execScript string

	mu            sync.Mutex
	engineAddress string
}

func main() {
	var engineAddress string
	for _, a := range os.Args[1:] {
		switch {
		case a == "-version" || a == "--version":
			fmt.Println(version)
			return
		case len(a) > 0 && a[0] == '-':
			// Flags such as -tracing are accepted and ignored.
		default:
			engineAddress = a
		}
	}

	self, err := os.Executable()
	if err != nil {
		fail("cannot locate this executable: %v", err)
	}
	execScript := filepath.Join(filepath.Dir(self), "pulumi-language-python-exec")
	if _, err := os.Stat(execScript); err != nil {
		fail("missing %s beside the language host: %v", execScript, err)
	}

	// Stop serving when interrupted or when the engine that started us goes away.
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	stop := make(chan bool)
	go func() { <-ctx.Done(); close(stop) }()
	if engineAddress != "" {
		if err := rpcutil.Healthcheck(ctx, engineAddress, 5*time.Minute, cancel); err != nil {
			fail("cannot watch the engine at %s: %v", engineAddress, err)
		}
	}

	h := &host{execScript: execScript, engineAddress: engineAddress}
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Cancel: stop,
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, h)
			return nil
		},
	})
	if err != nil {
		fail("cannot start the language host's gRPC server: %v", err)
	}
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		fail("language host stopped serving: %v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "pulumi-language-python (hyperfleet): "+format+"\n", args...)
	os.Exit(1)
}

func (h *host) Handshake(_ context.Context, req *pulumirpc.LanguageHandshakeRequest,
) (*pulumirpc.LanguageHandshakeResponse, error) {
	h.mu.Lock()
	h.engineAddress = req.GetEngineAddress()
	h.mu.Unlock()
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *host) GetPluginInfo(context.Context, *pbempty.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version}, nil
}

// GetRequiredPackages reports none: the engine then loads each provider plugin when the program
// first uses it, which is all an offline machine with pre-installed plugins needs.
func (h *host) GetRequiredPackages(context.Context, *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	return &pulumirpc.GetRequiredPackagesResponse{}, nil
}

func (h *host) GetRequiredPlugins(context.Context, *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	return &pulumirpc.GetRequiredPluginsResponse{}, nil
}

// pythonToolchain resolves the interpreter from the project's runtime options.
func pythonToolchain(info *pulumirpc.ProgramInfo) (toolchain.Toolchain, error) {
	opts := toolchain.PythonOptions{Root: info.GetRootDirectory(), ProgramDir: info.GetProgramDirectory()}
	options := info.GetOptions().AsMap()
	if v, ok := options["virtualenv"]; ok {
		s, ok := v.(string)
		if !ok {
			return nil, errors.New("runtime option virtualenv must be a string")
		}
		opts.Virtualenv = s
	}
	if v, ok := options["toolchain"]; ok {
		switch v {
		case "pip":
			opts.Toolchain = toolchain.Pip
		case "poetry":
			opts.Toolchain = toolchain.Poetry
		case "uv":
			opts.Toolchain = toolchain.Uv
		default:
			return nil, fmt.Errorf("unsupported runtime option toolchain: %v", v)
		}
	}
	if v, ok := options["typechecker"]; ok && v != "" {
		return nil, fmt.Errorf("runtime option typechecker (%v) is not supported by this language host", v)
	}
	return toolchain.ResolveToolchain(opts)
}

func (h *host) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	if req.GetAttachDebugger() {
		return &pulumirpc.RunResponse{Error: "debugging is not supported by this language host"}, nil
	}
	tc, err := pythonToolchain(req.GetInfo())
	if err != nil {
		return nil, err
	}
	if err := tc.ValidateVenv(ctx); err != nil {
		return nil, err
	}

	h.mu.Lock()
	engine := h.engineAddress
	h.mu.Unlock()
	args := []string{h.execScript}
	add := func(k, v string) {
		if v != "" {
			args = append(args, "--"+k, v)
		}
	}
	add("monitor", req.GetMonitorAddress())
	add("engine", engine)
	add("project", req.GetProject())
	add("root_directory", req.GetInfo().GetRootDirectory())
	add("stack", req.GetStack())
	add("pwd", req.GetPwd())
	add("dry_run", strconv.FormatBool(req.GetDryRun()))
	add("parallel", strconv.Itoa(int(req.GetParallel())))
	add("organization", req.GetOrganization())
	args = append(args, req.GetInfo().GetEntryPoint())
	args = append(args, req.GetArgs()...)

	cmd, err := tc.Command(ctx, args...)
	if err != nil {
		return nil, err
	}
	env := cmd.Env
	if env == nil {
		env = os.Environ()
	}
	configMap := req.GetConfig()
	if configMap == nil {
		configMap = map[string]string{} // the exec script wants an object, not null
	}
	config, err := json.Marshal(configMap)
	if err != nil {
		return nil, err
	}
	secretKeys := req.GetConfigSecretKeys()
	if secretKeys == nil {
		secretKeys = []string{}
	}
	secretKeysJSON, err := json.Marshal(secretKeys)
	if err != nil {
		return nil, err
	}
	cmd.Env = append(env, "PULUMI_CONFIG="+string(config), "PULUMI_CONFIG_SECRET_KEYS="+string(secretKeysJSON))
	// The engine shows what the host writes; the program's output goes the same way.
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr

	if err := cmd.Run(); err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			if exitErr.ExitCode() == exitAfterUserMessage {
				return &pulumirpc.RunResponse{Bail: true}, nil
			}
			return &pulumirpc.RunResponse{Error: fmt.Sprintf("program exited with non-zero exit code: %d",
				exitErr.ExitCode())}, nil
		}
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("could not run the Python program: %v", err)}, nil
	}
	return &pulumirpc.RunResponse{}, nil
}

func (h *host) About(ctx context.Context, req *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	tc, err := pythonToolchain(req.GetInfo())
	if err != nil {
		return nil, err
	}
	info, err := tc.About(ctx)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.AboutResponse{
		Executable: info.PythonExecutable,
		Version:    info.PythonVersion.String(),
		Metadata:   map[string]string{"host": "hyperfleet pulumi-language-python"},
	}, nil
}
