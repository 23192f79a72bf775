#!/usr/bin/env bash
# Stages 0-1 of egs/indic_real/asr1 (like ESPnet's local/data.sh): download, then import
# public Indic corpora into Kaldi data dirs. Run from the recipe dir (run.sh passes options).
#   0  download what may be downloaded (Kathbath archives; FLEURS, IndicVoices from the hub)
#      and check that the manual corpora (Common Voice, MUCS 2021) are where you said
#   1  import: $datadir/<corpus>_{train,dev}, $datadir/test_<corpus>[_<split>], then
#      $datadir/train and $datadir/dev = the union over --train_corpora
# Each import is skipped when its dir exists and was made with the same options.
set -euo pipefail

stage=0
stop_stage=1
corpora=kathbath,fleurs          # kathbath fleurs indicvoices commonvoice mucs
train_corpora=                    # corpora whose train/dev go into data/train, data/dev (default: all of --corpora)
langs=hi,mr,ta,te                 # ISO codes; each importer maps them to its own names
download_dir=downloads
datadir=data
kathbath_url=https://indic-asr-public.objectstore.e2enetworks.net/indic-superb/kathbath
kathbath_tests="test_known test_unknown test_known_noisy test_unknown_noisy"
indicvoices_root=                 # a local copy of ai4bharat/IndicVoices (default: download to $download_dir/indicvoices)
cv_root=                          # Common Voice release dir holding <lang>/{train,dev,test}.tsv (manual download)
mucs_root=                        # MUCS 2021 dir holding <Language>/{train,test}/ (manual download)
max_utts=                         # at most this many utterances per language and set (quick trials, tests)
_options="stage stop_stage corpora train_corpora langs download_dir datadir kathbath_url kathbath_tests indicvoices_root cv_root mucs_root max_utts"
. local/parse_options.sh

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (data.sh stage ${_stage:-}) $*"; }
run_stage() { _stage=$1; [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
has() { case ",$corpora," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
trains() { case ",$train_corpora," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }  # its train/dev are used
for c in ${corpora//,/ }; do
  case $c in kathbath|fleurs|indicvoices|commonvoice|mucs) ;; *) log "unknown corpus '$c' (kathbath fleurs indicvoices commonvoice mucs)" >&2; exit 1 ;; esac
done
[ -n "$train_corpora" ] || train_corpora=$corpora
cv_page="https://commonvoice.mozilla.org/datasets (accept the licence, download each language, extract it)"
mucs_page="https://navana-tech.github.io/MUCS2021/data.html (Hindi, Marathi, Odia: https://www.openslr.org/103/)"
need_root() {  # need_root <value> <option> <what> <page>
  if [ -z "$1" ] || [ ! -d "$1" ]; then
    log "$3 is downloaded by hand: get it from $4, then pass $2 <dir> (now: '${1}')" >&2; exit 1
  fi
}
fleurs_langs() { local out= l; for l in ${langs//,/ }; do case $l in ur) out+=ur_pk, ;; ne) out+=ne_np, ;; *) out+=${l}_in, ;; esac; done; echo "${out%,}"; }
kb_splits() { if trains kathbath; then echo train valid $kathbath_tests; else echo $kathbath_tests; fi; }
fleurs_splits() { if trains fleurs; then echo train dev test; else echo test; fi; }
iv_splits() { if trains indicvoices; then echo train valid; else echo valid; fi; }
iv_local=$indicvoices_root  # given: a local copy, used as it is; else stage 0 downloads into $download_dir
[ -n "$indicvoices_root" ] || indicvoices_root=$download_dir/indicvoices

if run_stage 0; then
  if has kathbath; then
    log "Kathbath: $(kb_splits) -> $download_dir/kathbath (all 12 languages are in each archive)"
    python local/data_prep/download.py kathbath --dir "$download_dir/kathbath" --subsets "$(kb_splits | tr ' ' ,)" --kathbath_url "$kathbath_url"
  fi
  if has fleurs; then
    log "FLEURS: $(fleurs_langs) -> $download_dir/fleurs"
    python local/data_prep/download.py fleurs --dir "$download_dir/fleurs" --langs "$(fleurs_langs)" --subsets "$(fleurs_splits | tr ' ' ,)"
  fi
  if has indicvoices; then
    if [ -n "$iv_local" ]; then
      log "IndicVoices: using the local copy $indicvoices_root"
    else
      log "IndicVoices (gated; your hub login or HF_TOKEN): $langs -> $indicvoices_root"
      python local/data_prep/download.py indicvoices --dir "$indicvoices_root" --langs "$langs" --subsets "$(iv_splits | tr ' ' ,)"
    fi
  fi
  if has commonvoice; then need_root "$cv_root" --cv_root "Common Voice" "$cv_page"; fi
  if has mucs; then need_root "$mucs_root" --mucs_root "MUCS 2021" "$mucs_page"; fi
fi

# import_set <dir name> <command...>: run the importer unless <dir> was made by the same command
import_set() {
  local name=$1; shift
  local args="$*"
  if [ -f "$datadir/$name/.import_args" ] && [ "$(cat "$datadir/$name/.import_args")" = "$args" ]; then
    log "$datadir/$name exists (same options), skipping"; return
  fi
  log "importing $datadir/$name"
  "$@" --outdir "$datadir/$name"
  echo "$args" > "$datadir/$name/.import_args"
}

if run_stage 1; then
  mkdir -p "$datadir"
  mx=(); [ -n "$max_utts" ] && mx=(--max_utts "$max_utts")
  kb_langs=$langs  # Kathbath, IndicVoices and MUCS importers take ISO codes
  if has kathbath; then
    for s in $(kb_splits); do
      case $s in train) n=kathbath_train ;; valid) n=kathbath_dev ;; *) n=test_kathbath_${s#test_} ;; esac
      import_set "$n" python local/data_prep/kathbath.py --root "$download_dir/kathbath" --langs "$kb_langs" --subset "$s" "${mx[@]}"
    done
  fi
  if has fleurs; then
    for s in $(fleurs_splits); do
      n=fleurs_$s; [ "$s" = test ] && n=test_fleurs
      import_set "$n" python local/data_prep/fleurs.py --root "$download_dir/fleurs" --langs "$(fleurs_langs)" --subset "$s" "${mx[@]}"
    done
  fi
  if has indicvoices; then
    for s in $(iv_splits); do  # IndicVoices publishes train and valid; valid is its test set here
      n=indicvoices_train; [ "$s" = valid ] && n=test_indicvoices
      import_set "$n" python local/data_prep/indicvoices.py --root "$indicvoices_root" --langs "$langs" --subset "$s" \
        --audio_dir "$datadir/indicvoices_audio/$s" "${mx[@]}"
    done
  fi
  if has commonvoice; then
    need_root "$cv_root" --cv_root "Common Voice" "$cv_page"
    for s in $(trains commonvoice && echo train dev) test; do
      n=cv_$s; [ "$s" = test ] && n=test_cv
      import_set "$n" python local/data_prep/common_voice.py --cv_root "$cv_root" --langs "$langs" --subset "$s" "${mx[@]}"
    done
  fi
  if has mucs; then
    need_root "$mucs_root" --mucs_root "MUCS 2021" "$mucs_page"
    for s in $(trains mucs && echo train) test; do
      n=mucs_$s; [ "$s" = test ] && n=test_mucs
      import_set "$n" python local/data_prep/mucs.py --root "$mucs_root" --langs "$langs" --subset "$s" "${mx[@]}"
    done
  fi
  for split in train dev; do
    srcs=(); for c in ${train_corpora//,/ }; do
      has "$c" || { log "--train_corpora names $c, which is not in --corpora $corpora" >&2; exit 1; }
      case $c in commonvoice) p=cv ;; *) p=$c ;; esac
      [ -d "$datadir/${p}_$split" ] && srcs+=("$datadir/${p}_$split")
    done
    [ ${#srcs[@]} -gt 0 ] || { log "no $split set in --train_corpora $train_corpora" >&2; exit 1; }
    log "$datadir/$split = ${srcs[*]}"
    python local/data_prep/combine_data_dirs.py --out "$datadir/$split" "${srcs[@]}"
  done
  log "test sets: $(cd "$datadir" && ls -d test_* | tr '\n' ' ')"
fi
