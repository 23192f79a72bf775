#!/usr/bin/env bash
# The accuracy table of RESULTS.md and its plots (CER per seed, expert use, gate entropy), from the exp dirs of the accuracy trainings
# (bench/bench_convergence.py --name <row> ..., seeds 1-3; the decode-time rows: the
# ./run.sh --stage 8 commands in RESULTS.md). A row is listed only when all its seeds are
# scored; the claims only when both of their rows are.
#
#   bench/accuracy_table.sh                      # print the table
#   bench/accuracy_table.sh --results_md RESULTS.md   # and replace its section there
#   seeds=1 bench/accuracy_table.sh              # a preview from seed 1 alone
set -euo pipefail
cd "$(dirname "$0")/../egs/indic_synth/asr1"
E=exp/asr_conv
seeds=${seeds:-1 2 3}

rows=(); labels=()
add_row() {  # label, exp name (conv_<name>_s<seed>), [exp suffix], [decode tag]
  local label=$1 name=$2 suffix=${3:-} tag=${4:-ctc_greedy} dirs=()
  for s in $seeds; do
    [ -f "${E}_${name}_s${s}${suffix}/decode_${tag}/scores.json" ] || return 0
    dirs+=("${E}_${name}_s${s}${suffix}")
  done
  rows+=(--row "$label=$(IFS=+; echo "${dirs[*]}"):$tag"); labels+=("$label")
}
add_row "dense conformer" tristage_e9
add_row "control: our blocks, no experts" acc_blr_moe_no_experts
add_row "LR-MoE" acc_lr_moe
add_row "LR-MoE + router augmentation" acc_lr_moe _router_adapt
add_row "BLR-MoE (V,O)" acc_blr_moe
add_row "BLR-MoE ablation: V only" acc_blr_moe_attn_v
add_row "BLR-MoE ablation: Q,K,V,O" acc_blr_moe_attn_qkvo
add_row "BLR-MoE ablation: FFN experts only" acc_blr_moe_ffn_only
add_row "BLR-MoE + router augmentation" acc_blr_moe _router_adapt
add_row "BLR-MoE, correct prior, hard" acc_blr_moe "" ctc_greedy_prior_hard_oracle
add_row "BLR-MoE, correct prior, soft" acc_blr_moe "" ctc_greedy_prior_soft_oracle
add_row "BLR-MoE, wrong prior, hard" acc_blr_moe "" ctc_greedy_prior_hard_oracle_wrong
add_row "BLR-MoE, wrong prior, soft" acc_blr_moe "" ctc_greedy_prior_soft_oracle_wrong
# projectors + a 2-block head on the frozen dense conformer of the same seed (--base_exp)
add_row "frozen encoder + monolithic projector" acc_frozen_monolithic
add_row "frozen encoder + dense ensemble" acc_frozen_dense_ensemble
add_row "frozen encoder + hard top-1" acc_frozen_hard_topk
add_row "frozen encoder + SMEAR-MoE" acc_frozen_smear
add_row "SMEAR-MoE + BLR-MoE" acc_smear_blr_moe

claims=()
has_row() { local l; for l in "${labels[@]}"; do [ "$l" = "$1" ] && return 0; done; return 1; }
add_claim() {  # A, B, scopes, source
  has_row "$1" && has_row "$2" || return 0
  claims+=(--relative "$1|$2|$3|$4")
}
add_claim "BLR-MoE (V,O)" "LR-MoE" "all=-16.09,ood=-19.09,id=-3.98" "BLR-MoE paper: BLR-MoE vs LR-MoE"
add_claim "BLR-MoE (V,O)" "BLR-MoE ablation: FFN experts only" "all=-7.3..-3.2,ood,id" "BLR-MoE paper: attention experts (V,O) on top of FFN experts, -3.2 to -7.3 %"
add_claim "BLR-MoE ablation: V only" "BLR-MoE ablation: FFN experts only" "all,ood,id" "attention experts, V only"
add_claim "BLR-MoE ablation: Q,K,V,O" "BLR-MoE ablation: FFN experts only" "all,ood,id" "attention experts, Q,K,V,O"
add_claim "BLR-MoE (V,O)" "BLR-MoE ablation: V only" "all" "the paper's choice of projections (V,O) vs V alone"
add_claim "BLR-MoE (V,O)" "BLR-MoE ablation: Q,K,V,O" "all" "the paper's choice of projections (V,O) vs all four"
add_claim "BLR-MoE ablation: FFN experts only" "LR-MoE" "all,ood,id" "the TDNN router alone (LR-MoE's experts)"
add_claim "BLR-MoE, correct prior, hard" "BLR-MoE (V,O)" "all=-34.28,ood,id" "BLR-MoE paper: expert pruning with a language prior, up to -34.28 %"
add_claim "BLR-MoE, correct prior, soft" "BLR-MoE (V,O)" "all,ood,id" "soft prior (ours)"
add_claim "BLR-MoE, wrong prior, hard" "BLR-MoE (V,O)" "all" "a wrong prior: the cost of a mistaken language"
add_claim "BLR-MoE + router augmentation" "BLR-MoE (V,O)" "ood,id" "BLR-MoE paper: router augmentation helps mismatched domains"
add_claim "LR-MoE + router augmentation" "LR-MoE" "ood,id" "router augmentation on LR-MoE (ours)"
add_claim "LR-MoE" "dense conformer" "all,ood,id" "LR-MoE paper: language-routed experts beat the dense model"
add_claim "frozen encoder + SMEAR-MoE" "frozen encoder + monolithic projector" "all=-7.6,id,ood" "SMEAR-MoE paper: up to -7.6 % relative WER vs the single projector (we test CER)"
add_claim "frozen encoder + SMEAR-MoE" "frozen encoder + hard top-1" "all" "SMEAR-MoE paper: merging beats hard top-k routing"
add_claim "frozen encoder + SMEAR-MoE" "frozen encoder + dense ensemble" "all" "SMEAR-MoE paper: vs the dense ensemble"
add_claim "control: our blocks, no experts" "dense conformer" "all,ood,id" "what our blocks do without experts"
add_claim "LR-MoE" "control: our blocks, no experts" "all,ood,id" "what LR-MoE's experts add (same blocks, linear router, LID loss)"
add_claim "SMEAR-MoE + BLR-MoE" "BLR-MoE (V,O)" "all,ood,id" "a SMEAR-MoE projector in front of BLR-MoE (ours)"

python local/compare_results.py --data_root dump/raw --ood_exclude test_ood_tel --per_lang \
  --seed_plot ../../../bench/results/cer_per_seed.png --wer_md ../../../bench/results/wer_table.md \
  $( [ -f ../../../bench/results/rtf.json ] && echo --rtf_alone ../../../bench/results/rtf.json ) "${rows[@]}" "${claims[@]}" "$@"

# Expert use per language, in domain vs mismatched (every language-routed row's seeds).
scored() { local s; for s in $seeds; do [ -f "${E}_$1_s${s}/decode_ctc_greedy/scores.json" ] || return 1; done; }
joined() { local s out=(); for s in $seeds; do out+=("${E}_$1_s${s}$2"); done; (IFS=+; echo "${out[*]}"); }  # name, path in the exp dir
use=()
for name in acc_lr_moe acc_blr_moe; do
  scored $name && use+=(--row "${name#acc_}=$(joined $name /decode_ctc_greedy)")
done
if [ ${#use[@]} -gt 0 ]; then
  python local/plot_expert_use.py --data_root dump/raw --lang_list data/lang_list "${use[@]}" \
    --ood test_ood_noise test_ood_reverb test_ood_band test_ood_variant test_ood_voice \
    --out ../../../bench/results/expert_use
fi

# Gate entropy over training: SMEAR-MoE's merged gate vs hard top-1's (same gate, argmax).
if scored acc_frozen_smear && scored acc_frozen_hard_topk; then
  python local/training_curves.py --per_update --key gate_entropy --out ../../../bench/results/gate_entropy \
    --log "SMEAR-MoE=$(joined acc_frozen_smear /train.log)" --log "hard top-1=$(joined acc_frozen_hard_topk /train.log)" > /dev/null
fi
