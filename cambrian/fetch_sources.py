"""Where each checkpoint and training set comes from: the tables ``python -m cambrian.fetch`` reads.

A checkpoint's name is its path under ``$CAMBRIAN_CHECKPOINTS``, which for a Hugging Face repo is
the repo id (``facebook/dinov2-large``), as the configs name them. A training-data entry names the
paths under ``$CAMBRIAN_DATA`` that configs read (``provides``) and the parts that fill them:
files of hub repos, archives unpacked into folders, and the recipe built from them. Benchmarks
come from each benchmark module's ``SOURCE`` (``cambrian/eval/benchmarks/<name>.py``).

Layouts are those of the hub repos' file trees; what a hub page could not show (the folders
inside an archive) is checked after unpacking (``Part.expect``), so a layout that differs stops
the fetch with the names it found instead of failing in training.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Hub:
    """Files of a Hugging Face repo: glob patterns over its paths (``*`` crosses folders).

    In each folder where a ``*.safetensors`` file is taken, pickled weight files of the same
    folder (``*.bin``, ``*.pth``, ``*.pt``, ``pytorch_model.bin.index.json``) are left out."""

    repo: str
    files: tuple[str, ...]
    repo_type: str = "model"
    revision: str = "main"
    ignore: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        kind = "datasets/" if self.repo_type == "dataset" else ""
        return f"https://huggingface.co/{kind}{self.repo}"


@dataclasses.dataclass(frozen=True)
class Http:
    """One file at a plain HTTP(S) URL."""

    url: str


@dataclasses.dataclass(frozen=True)
class Part:
    """One source of an item and where its files go (``into``, relative to the item's folder).

    ``unpack``: the files are archives (``.tar``, ``.tar.gz``, ``.zip``, or a tar split into
    ``name.tar_part1..N`` / ``name.tar.part-aa..``), extracted into ``into`` and then deleted.
    ``expect``: paths that must exist under ``into`` afterwards."""

    source: Hub | Http
    into: str = ""
    unpack: bool = False
    expect: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Build:
    """A data recipe built from the downloaded parts: ``data_recipes/<recipe>`` with ``arg``
    (``{root}`` is the item's folder), written to ``out`` under it."""

    recipe: str
    arg: str
    out: str


@dataclasses.dataclass(frozen=True)
class Data:
    """A training set: the paths it provides under its root (``$CAMBRIAN_DATA``) and its parts.
    Parts land in ``folder`` under the root."""

    folder: str
    provides: tuple[str, ...]
    parts: tuple[Part, ...]
    build: Build | None = None
    about: str = ""


# Weights of transformers / timm / open_clip repos, with their configs and tokenizer files; the
# per-folder safetensors preference drops the pickled twins.
WEIGHTS = ("*.json", "*.safetensors", "*.bin", "*.pth", "*.pt", "*.model", "*.txt",
           "*.tiktoken")
NOT_WEIGHTS = ("*.msgpack", "*.h5", "*.onnx", "*.ckpt", "onnx/*", "openvino/*", "coreml/*",
               "*fp16*", "*.ot")


def _model(repo: str, files: tuple[str, ...] = WEIGHTS) -> Hub:
    return Hub(repo, files, ignore=NOT_WEIGHTS)


_HF_REPOS = (
    # language-supervised
    "openai/clip-vit-large-patch14-336", "openai/clip-vit-large-patch14",
    "apple/DFN2B-CLIP-ViT-L-14", "apple/DFN5B-CLIP-ViT-H-14-384",
    "timm/eva02_large_patch14_clip_336.merged2b_s6b_b61k",
    "timm/eva02_large_patch14_clip_224.merged2b_s4b_b131k",
    "timm/ViT-SO400M-14-SigLIP-384", "timm/ViT-SO400M-14-SigLIP", "google/siglip-large-patch16-384",
    "laion/CLIP-convnext_large_d_320.laion2B-s29B-b131K-ft-soup",
    "laion/CLIP-convnext_xxlarge-laion2B-s34B-b82K-augreg-soup",
    "apple/aimv2-large-patch14-336",
    "google/siglip2-so400m-patch14-384", "google/siglip2-so400m-patch16-naflex",
    "google/siglip2-giant-opt-patch16-384", "facebook/metaclip-2-worldwide-huge-378",
    "facebook/metaclip-2-worldwide-giant-378",
    # Perception Encoder (the authors' PE-*.pt), C-RADIO (safetensors + config.json)
    "facebook/PE-Core-L14-336", "facebook/PE-Lang-L14-448", "facebook/PE-Lang-G14-448",
    "facebook/PE-Spatial-L14-448", "nvidia/C-RADIOv3-L", "nvidia/C-RADIOv3-H", "nvidia/C-RADIOv4-H",
    # self-supervised, segmentation, depth, class labels
    "facebook/dinov2-large", "facebook/dinov2-giant", "facebook/ijepa_vith14_22k",
    "facebook/dinov3-vitl16-pretrain-lvd1689m", "facebook/dinov3-vit7b16-pretrain-lvd1689m",
    "facebook/dinov3-convnext-large-pretrain-lvd1689m", "facebook/webssl-dino7b-full8b-224",
    "facebook/webssl-dino7b-full8b-518", "facebook/webssl-mae3b-full2b-224",
    "timm/vit_large_patch16_224.mae", "timm/vit_huge_patch14_224.mae",
    "facebook/sam-vit-large", "facebook/sam-vit-huge", "Intel/dpt-large",
    "facebook/sam2.1-hiera-base-plus", "facebook/sam2.1-hiera-large",
    "timm/vit_large_patch16_224.orig_in21k", "timm/vit_huge_patch14_224.orig_in21k",
    # LLMs (their tokenizer files are in the same folder)
    "lmsys/vicuna-7b-v1.5", "lmsys/vicuna-13b-v1.5", "meta-llama/Meta-Llama-3-8B-Instruct",
    "NousResearch/Nous-Hermes-2-Yi-34B",
)

CHECKPOINTS: dict[str, Hub | Http] = {
    **{repo: _model(repo) for repo in _HF_REPOS},
    # the diffusion probe reads the VAE, the UNet and the empty-prompt text encoder
    "stabilityai/stable-diffusion-2-1": _model("stabilityai/stable-diffusion-2-1", (
        "model_index.json", "scheduler/*", "tokenizer/*", "text_encoder/config.json",
        "text_encoder/model.safetensors", "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors", "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors")),
    # MoCo v3 releases its ViTs on Meta's file server, not on the Hub
    "mocov3/vit-b-300ep.pth.tar": Http(
        "https://dl.fbaipublicfiles.com/moco-v3/vit-b-300ep/vit-b-300ep.pth.tar"),
    "mocov3/vit-l-300ep.pth.tar": Http(
        "https://dl.fbaipublicfiles.com/moco-v3/vit-l-300ep/vit-l-300ep.pth.tar"),
}

SHAREGPT4V_PT_JSON = "share-captioner_coco_lcs_sam_1246k_1107.json"

DATA: dict[str, Data] = {
    # Stage 1 of the encoder sweep: ShareGPT4V-PT, 1.2M ShareCaptioner captions of LAION/CC/SBU
    # (LLaVA-Pretrain's 558K images), COCO train2017 and SAM images, in ShareGPT4V's data/ layout.
    "sharegpt4v_pt": Data(
        folder="sharegpt4v", provides=(f"sharegpt4v/{SHAREGPT4V_PT_JSON}", "sharegpt4v"),
        about="ShareGPT4V-PT 1246K captions (Lin-Chen/ShareGPT4V) + their images",
        parts=(
            Part(Hub("Lin-Chen/ShareGPT4V", (SHAREGPT4V_PT_JSON,), "dataset")),
            Part(Hub("liuhaotian/LLaVA-Pretrain", ("images.zip",), "dataset"),
                 into="llava/llava_pretrain/images", unpack=True),
            Part(Hub("nyu-visionx/Cambrian-Alignment", ("coco.tar",), "dataset"), unpack=True,
                 expect=("coco/train2017",)),
            Part(Hub("nyu-visionx/Cambrian-Alignment", ("sam.tar_part*",), "dataset"),
                 unpack=True, expect=("sam/images",)),
        )),
    # Stage 2 of the encoder sweep: LLaVA-665K + AI2D, DocVQA and DVQA drawn from Cambrian-10M,
    # built by data_recipes/cambrian_737k.py. LLaVA-665K's image folders come from Cambrian-10M.
    "cambrian_737k": Data(
        folder="", provides=("built/cambrian_737k",),
        about="LLaVA-665K + Cambrian-10M AI2D/DocVQA/DVQA, built as data_recipes/cambrian_737k.py",
        parts=(
            Part(Hub("liuhaotian/LLaVA-Instruct-150K", ("llava_v1_5_mix665k.json",), "dataset"),
                 into="llava"),
            Part(Hub("nyu-visionx/Cambrian-10M", ("coco.tar.gz", "gqa.tar.gz", "ocr_vqa.tar.gz",
                                                   "textvqa.tar.gz", "vg.tar.gz"), "dataset"),
                 into="llava", unpack=True,
                 expect=("coco/train2017", "gqa/images", "ocr_vqa/images", "textvqa/train_images",
                         "vg/VG_100K")),
            Part(Hub("nyu-visionx/Cambrian-10M", ("jsons/Cambrian10M.jsonl",), "dataset"),
                 into="Cambrian-10M"),
            Part(Hub("nyu-visionx/Cambrian-10M", ("ai2d.tar.gz", "docvqa.tar.gz", "dvqa.tar.gz"),
                     "dataset"), into="Cambrian-10M", unpack=True,
                 expect=("ai2d", "docvqa", "dvqa")),
        ),
        build=Build("cambrian_737k.py", "root={root}/Cambrian-10M,llava_root={root}/llava",
                    "built/cambrian_737k")),
}
