//! The task graph of a workflow: which tasks each task needs before it may
//! start. A task without `needs` needs the task listed before it, so a plain
//! list still runs in order; `needs: []` starts at once. Unknown names and
//! cycles are refused when the workflow is saved, with the names in the
//! message; the worker walks the same graph.

use std::collections::{BTreeSet, HashMap};

/// The resolved graph: for each task (by list position), the positions of
/// the tasks it needs, sorted and without repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    needs: Vec<Vec<usize>>,
}

impl Graph {
    /// Resolves `needs` (`None`: the previous task) over tasks named
    /// `names`; `list` names the list in messages (`tasks`).
    pub fn resolve(
        list: &str,
        names: &[&str],
        needs: &[Option<&[String]>],
    ) -> Result<Graph, String> {
        debug_assert_eq!(names.len(), needs.len());
        let position: HashMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(at, name)| (*name, at))
            .collect();
        let mut resolved = Vec::with_capacity(names.len());
        for (at, need) in needs.iter().enumerate() {
            let set: BTreeSet<usize> = match need {
                None => at.checked_sub(1).into_iter().collect(),
                Some(need) => need
                    .iter()
                    .map(|name| {
                        position.get(name.as_str()).copied().ok_or_else(|| {
                            format!(
                                "{list}[{at}].needs: unknown task {name:?} (the tasks are {})",
                                names.join(", ")
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?,
            };
            resolved.push(set.into_iter().collect());
        }
        let graph = Graph { needs: resolved };
        if let Some(cycle) = graph.cycle() {
            let mut path: Vec<&str> = cycle.iter().map(|at| names[*at]).collect();
            path.push(names[cycle[0]]);
            return Err(format!(
                "{list}: the needs form a cycle: {}",
                path.join(" → ")
            ));
        }
        Ok(graph)
    }

    /// How many tasks the graph has.
    pub fn len(&self) -> usize {
        self.needs.len()
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.needs.is_empty()
    }

    /// The positions of the tasks task `at` needs.
    pub fn needs(&self, at: usize) -> &[usize] {
        &self.needs[at]
    }

    /// Tasks not in `started` whose needs are all in `done`, in list order.
    pub fn ready<'a>(
        &'a self,
        started: &'a [bool],
        done: &'a [bool],
    ) -> impl Iterator<Item = usize> + 'a {
        (0..self.needs.len())
            .filter(move |at| !started[*at] && self.needs[*at].iter().all(|need| done[*need]))
    }

    /// The tasks that need `from`, directly or not, with `from` itself.
    pub fn downstream(&self, from: usize) -> BTreeSet<usize> {
        let mut found = BTreeSet::from([from]);
        // Needs only point at tasks that exist; iterate to a fixed point.
        loop {
            let before = found.len();
            for (at, needs) in self.needs.iter().enumerate() {
                if needs.iter().any(|need| found.contains(need)) {
                    found.insert(at);
                }
            }
            if found.len() == before {
                return found;
            }
        }
    }

    /// One cycle, as the positions on it in order, if there is any.
    fn cycle(&self) -> Option<Vec<usize>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnPath,
            Done,
        }
        let mut marks = vec![Mark::New; self.needs.len()];
        for start in 0..self.needs.len() {
            if marks[start] != Mark::New {
                continue;
            }
            // Iterative depth-first search: (task, next need to look at).
            let mut path: Vec<(usize, usize)> = vec![(start, 0)];
            marks[start] = Mark::OnPath;
            while let Some((at, next)) = path.last_mut() {
                let at = *at;
                match self.needs[at].get(*next) {
                    Some(&need) => {
                        *next += 1;
                        match marks[need] {
                            Mark::New => {
                                marks[need] = Mark::OnPath;
                                path.push((need, 0));
                            }
                            Mark::OnPath => {
                                // The cycle is the path from `need` to here,
                                // shown in the order tasks run.
                                let from = path.iter().position(|(task, _)| *task == need)?;
                                // Each task on the path needs the next
                                // one, so it runs after it: read it backwards.
                                let mut cycle = vec![need];
                                cycle.extend(path[from + 1..].iter().rev().map(|(task, _)| *task));
                                return Some(cycle);
                            }
                            Mark::Done => {}
                        }
                    }
                    None => {
                        marks[at] = Mark::Done;
                        path.pop();
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(spec: &[(&str, Option<&[&str]>)]) -> Result<Graph, String> {
        let names: Vec<&str> = spec.iter().map(|(name, _)| *name).collect();
        let owned: Vec<Option<Vec<String>>> = spec
            .iter()
            .map(|(_, needs)| needs.map(|n| n.iter().map(|s| s.to_string()).collect()))
            .collect();
        let needs: Vec<Option<&[String]>> = owned.iter().map(|n| n.as_deref()).collect();
        Graph::resolve("tasks", &names, &needs)
    }

    #[test]
    fn a_plain_list_runs_in_order() {
        let graph = resolve(&[("a", None), ("b", None), ("c", None)]).unwrap();
        assert_eq!(graph.needs(0), &[] as &[usize]);
        assert_eq!(graph.needs(1), &[0]);
        assert_eq!(graph.needs(2), &[1]);
    }

    #[test]
    fn branches_join_and_start_at_once() {
        let graph = resolve(&[
            ("a", Some(&[])),
            ("b", Some(&[])),
            ("join", Some(&["a", "b", "a"])),
        ])
        .unwrap();
        let started = [false; 3];
        let ready: Vec<usize> = graph.ready(&started, &[false; 3]).collect();
        assert_eq!(ready, vec![0, 1]);
        let ready: Vec<usize> = graph
            .ready(&[true, true, false], &[true, false, false])
            .collect();
        assert!(ready.is_empty());
        let ready: Vec<usize> = graph
            .ready(&[true, true, false], &[true, true, false])
            .collect();
        assert_eq!(ready, vec![2]);
        assert_eq!(graph.needs(2), &[0, 1]);
        assert_eq!(graph.downstream(1), BTreeSet::from([1, 2]));
    }

    #[test]
    fn unknown_names_and_cycles_are_named() {
        let err = resolve(&[("a", None), ("b", Some(&["nope"]))]).unwrap_err();
        assert_eq!(
            err,
            "tasks[1].needs: unknown task \"nope\" (the tasks are a, b)"
        );
        let err = resolve(&[("a", Some(&["c"])), ("b", None), ("c", None)]).unwrap_err();
        assert_eq!(err, "tasks: the needs form a cycle: a → b → c → a");
        let err = resolve(&[("a", Some(&["a"]))]).unwrap_err();
        assert_eq!(err, "tasks: the needs form a cycle: a → a");
    }
}
