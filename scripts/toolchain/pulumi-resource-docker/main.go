// Command pulumi-resource-docker is hyperfleet's offline build of the Pulumi Docker provider: the
// Terraform bridge (pulumi-terraform-bridge) wrapped around the unmodified Terraform Docker provider
// (kreuzwerker/terraform-provider-docker), both taken from the Go module proxy.
//
// Pulumi's own build of this provider cannot be had here (its module is not served, and it is built
// from a patched git submodule). What this file adds is the naming that the bridge needs so that the
// pulumi-docker Python SDK of the same version talks to it: each Terraform resource "docker_xyz"
// becomes "docker:index/xyz:Xyz", except where the SDK names it otherwise (listed below, checked
// against the SDK's resource tokens and property names). The SDK's one resource that is not a
// Terraform one, docker.Image (Pulumi's own image build), is not served by this build: programs use
// docker.RemoteImage, or build images outside Pulumi. Network, Volume, Container, RemoteImage,
// Service, ServiceConfig, Secret, Plugin, Tag, RegistryImage and BuildxBuilder are served.
//
// Built by scripts/install-toolchain.sh, which sets main.version to the pinned SDK version.
package main

import (
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge/tokens"
	shimv2 "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfshim/sdk-v2"

	"github.com/terraform-providers/terraform-provider-docker/hyperfleetshim"
)

// version is set at link time (-ldflags "-X main.version=...").
var version = "0.0.0-dev"

func main() {
	info := tfbridge.ProviderInfo{
		P:           shimv2.NewProvider(hyperfleetshim.New(version)),
		Name:        "docker",
		Version:     version,
		DisplayName: "Docker",
		Publisher:   "hyperfleet (offline build)",
		GitHubOrg:   "kreuzwerker",
		Description: "Docker provider bridged from the Terraform Docker provider",
		Config: map[string]*tfbridge.SchemaInfo{
			// A list in the SDK, under a singular name.
			"registry_auth": {Name: "registryAuth", MaxItemsOne: tfbridge.False()},
		},
		Resources: map[string]*tfbridge.ResourceInfo{
			"docker_config": {Tok: "docker:index/serviceConfig:ServiceConfig"},
			"docker_image": {
				Tok:    "docker:index/remoteImage:RemoteImage",
				Fields: map[string]*tfbridge.SchemaInfo{"name": {Name: "name"}},
			},
			"docker_container": {
				Tok: "docker:index/container:Container",
				// A container's name is unique on the host: the old one goes first.
				DeleteBeforeReplace: true,
				Fields: map[string]*tfbridge.SchemaInfo{
					"command":           {Name: "command"},          // one command as a list, not "commands"
					"networks_advanced": {Name: "networksAdvanced"}, // not pluralised in the SDK
				},
			},
		},
		DataSources: map[string]*tfbridge.DataSourceInfo{
			"docker_image": {Tok: "docker:index/getRemoteImage:getRemoteImage"},
		},
	}
	info.MustComputeTokens(tokens.SingleModule("docker_", "index", tokens.MakeStandard("docker")))
	// Like the SDK's provider: a resource given no name gets "<resource name>-<random suffix>".
	info.SetAutonaming(255, "-")
	// No Pulumi schema is embedded: the engine needs none to run programs; without one the
	// provider skips type-checking its configuration (the Terraform schema still validates it).
	tfbridge.Main("docker", version, info, nil)
}
