# seastreamer.bash: bash completion for seastreamer: its commands and each command's options.
# The words come from the command's own --help texts (asked once per shell), so they follow
# the installed version. Installed as <datadir>/bash-completion/completions/seastreamer.
_seastreamer_words() { # CMD: the options in `seastreamer CMD --help`, or the commands
  local ss=$1 cmd=$2 var="_seastreamer_cache_${2:-top}" text
  var=${var//[^A-Za-z0-9_]/_}
  if [[ -z ${!var-} ]]; then
    if [[ -z $cmd ]]; then
      text=$("$ss" --help 2>/dev/null | sed -n '/^commands:/,/^$/s/^  \([a-z]\+\) .*/\1/p')
      # (each word once: help and version are among the commands --help lists, or not)
      text=$(printf '%s\n' $text help version --help --version | awk '!seen[$0]++')
    else
      text=$("$ss" "$cmd" --help 2>/dev/null | grep -oE '(^|[][ ,|(])--?[A-Za-z][A-Za-z0-9-]*' |
        sed 's/^[][ ,|(]//' | sort -u)
    fi
    printf -v "$var" '%s' "${text//$'\n'/ } "
  fi
  printf '%s' "${!var}"
}

_seastreamer() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]} ss=${COMP_WORDS[0]}
  COMPREPLY=()
  if ((COMP_CWORD == 1)); then
    mapfile -t COMPREPLY < <(compgen -W "$(_seastreamer_words "$ss" "")" -- "$cur")
    return
  fi
  local cmd=${COMP_WORDS[1]}
  case $prev in
  --lua) mapfile -t COMPREPLY < <(compgen -W "5.4 luajit" -- "$cur"); return ;;
  --format) mapfile -t COMPREPLY < <(compgen -W "log ndjson" -- "$cur"); return ;;
  --mode) mapfile -t COMPREPLY < <(compgen -W "realtime resumable load-balanced" -- "$cur"); return ;;
  esac
  if [[ $cur == -* ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$(_seastreamer_words "$ss" "$cmd")" -- "$cur")
    return
  fi
  # Files for decode/verify/repair and for run's script; URIs are free text.
  mapfile -t COMPREPLY < <(compgen -f -- "$cur")
}
complete -o filenames -F _seastreamer seastreamer
