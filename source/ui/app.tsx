// The wizard: one reducer above the screens; the long-running work (discover, preview,
// apply, keep, roll back) runs here, not in screens, so leaving a screen never drops it.

import {createContext, memo, useContext, useEffect, useMemo, useReducer, useRef, useSyncExternalStore} from 'react';
import {Box, Static, useApp, useInput} from 'ink';
import {EscapeClaimContext, InputActiveContext} from './components.js';
import {UiProvider, type UiEnvironment} from './context.js';
import {canGoBack, initialState, reducer, type Action, type WizardState} from './state.js';
import type {ApplyOutcome, ApplyProgress, FleetDoc, KeepResult, WizardSettings} from './services.js';
import {QuestionPanel} from './screens/question.js';
import {HomeScreen} from './screens/home.js';
import {AddServerScreen} from './screens/add-server.js';
import {AddFromConfigScreen} from './screens/add-from-config.js';
import {SettingsScreen} from './screens/settings.js';
import {FileScreen} from './screens/file.js';
import {DiscoverScreen} from './screens/discover.js';
import {RolesScreen} from './screens/roles.js';
import {PreviewScreen} from './screens/preview.js';
import {ApplyScreen, HostSteps} from './screens/apply.js';
import {CountdownScreen} from './screens/countdown.js';
import {DoneScreen} from './screens/done.js';
import {QuickEditScreen} from './screens/quick-edit.js';
import {TroubleshootScreen} from './screens/troubleshoot.js';

export interface WizardActions {
  refreshStatus(): Promise<void>;
  saveFleet(fleet: FleetDoc, settings?: WizardSettings): Promise<boolean>;
  discover(fleet: FleetDoc, hosts: readonly string[]): Promise<void>;
  preview(draft: FleetDoc, scope: readonly string[]): Promise<void>;
  apply(draft: FleetDoc, scope: readonly string[]): Promise<void>;
  /** Undo the last change: the rules from before `batch` back on `hosts`, with the countdown of an apply. */
  undo(batch: string, hosts: readonly string[]): Promise<void>;
  keep(): Promise<void>;
  /** On the done screen: make the kept rules of the servers that lack it survive a reboot. */
  installPersistence(): Promise<void>;
  rollbackNow(): Promise<void>;
  deadlinePassed(): Promise<void>;
  exit(): void;
}

interface WizardContextValue {
  readonly state: WizardState;
  readonly dispatch: React.Dispatch<Action>;
  readonly actions: WizardActions;
}

const WizardContext = createContext<WizardContextValue | undefined>(undefined);

export function useWizard(): WizardContextValue {
  const value = useContext(WizardContext);
  if (!value) throw new Error('useWizard outside App');
  return value;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message.split('\n').join('; ') : String(error);
}

export interface AppProps extends UiEnvironment {
  /** Called once when the operator quits; the exit code of the process. */
  readonly onExit?: (code: number) => void;
}

export function App(props: AppProps) {
  const {services, prompts} = props;
  const {exit} = useApp();
  const [state, dispatch] = useReducer(reducer, undefined, initialState);
  const stateRef = useRef(state);
  stateRef.current = state;
  // Ctrl+C or R while the apply is still running: roll back as soon as the batch exists.
  const rollbackRequested = useRef(false);
  const busy = useRef(false);
  const escapeClaims = useRef(0);
  const statusReads = useRef(0);

  const question = useSyncExternalStore(
    (listener) => prompts.subscribe(listener),
    () => prompts.current(),
  );

  const actions = useMemo<WizardActions>(() => {
    const refreshStatus = async () => {
      // Only the newest read is shown: an older one finishing later (a slow or unreachable host)
      // would put back states from before a change that was kept since.
      const read = ++statusReads.current;
      try {
        // Each host shows as soon as it answers; the screen stays live while hundreds are checked.
        // Only the newest read is shown: an older one finishing late must not overwrite it.
        const states = await services.status(stateRef.current.fleet, (host, hostState) => {
          if (read === statusReads.current) dispatch({type: 'host-state', host, state: hostState});
        });
        if (read === statusReads.current) dispatch({type: 'host-states', states});
      } catch (error) {
        if (read === statusReads.current) dispatch({type: 'message', text: `status: ${messageOf(error)}`});
      }
    };
    const saveFleet = async (fleet: FleetDoc, settings?: WizardSettings) => {
      const problems = await services.validateFleet(fleet);
      if (problems.length > 0) {
        dispatch({type: 'message', text: problems.join('; ')});
        return false;
      }
      try {
        await services.saveFleet(fleet, settings ?? stateRef.current.settings);
        dispatch(settings ? {type: 'fleet-changed', fleet, settings} : {type: 'fleet-changed', fleet});
        // Work started right after a save (e.g. the status refresh after an import) must see it.
        stateRef.current = {...stateRef.current, fleet, draft: fleet, ...(settings ? {settings} : {})};
        return true;
      } catch (error) {
        dispatch({type: 'message', text: `save: ${messageOf(error)}`});
        return false;
      }
    };
    const discover = async (fleet: FleetDoc, hosts: readonly string[]) => {
      for (const host of hosts) dispatch({type: 'discover-progress', host, phase: 'connecting'});
      try {
        const results = await services.discover(fleet, hosts, (event) => {
          if (event.phase === 'finished') dispatch({type: 'discovered', result: event.result});
          else dispatch({type: 'discover-progress', host: event.host, phase: event.phase});
        });
        for (const result of results) dispatch({type: 'discovered', result});
      } catch (error) {
        for (const host of hosts) dispatch({type: 'discovered', result: {host, ok: false, error: messageOf(error)}});
      }
    };
    const preview = async (draft: FleetDoc, scope: readonly string[]) => {
      try {
        dispatch({type: 'preview-ready', preview: await services.preview(draft, scope)});
      } catch (error) {
        dispatch({type: 'preview-ready', preview: {hosts: [], access: [], lockout: [], problems: [messageOf(error)]}});
      }
    };
    const finishRollback = async (why: 'operator' | 'expired') => {
      const batch = stateRef.current.batch;
      if (!batch) return;
      try {
        const hosts = why === 'operator' ? await services.rollback(batch) : await services.verifyExpired(batch);
        dispatch({type: 'finished', outcome: {kind: 'rolled-back', why, hosts}});
      } catch (error) {
        dispatch({type: 'finished', outcome: {kind: 'rolled-back', why, hosts: [], reasons: [messageOf(error)]}});
      }
      void refreshStatus();
    };
    const apply = (draft: FleetDoc, scope: readonly string[]) =>
      runBatch((deadlineSeconds, onProgress) => services.apply(draft, scope, deadlineSeconds, onProgress));
    const undo = (batch: string, hosts: readonly string[]) =>
      runBatch((deadlineSeconds, onProgress) => services.undo(stateRef.current.fleet, batch, hosts, deadlineSeconds, onProgress), () =>
        dispatch({type: 'start-undo', hosts}),
      );
    /** Apply and undo: the apply screen, then the countdown (or why it was refused or failed). */
    const runBatch = async (
      start: (deadlineSeconds: number, onProgress: (event: ApplyProgress) => void) => Promise<ApplyOutcome>,
      before?: () => void,
    ) => {
      const {settings} = stateRef.current;
      if (busy.current) return;
      busy.current = true;
      rollbackRequested.current = false;
      before?.();
      dispatch({type: 'apply-started'});
      try {
        const outcome = await start(settings.deadlineSeconds, (event) => dispatch({type: 'apply-progress', event}));
        if (outcome.kind === 'pending') {
          dispatch({type: 'apply-outcome-pending', batch: outcome.batch});
          stateRef.current = {...stateRef.current, batch: outcome.batch};
          if (rollbackRequested.current) await finishRollback('operator');
        } else if (outcome.kind === 'refused') {
          dispatch({type: 'finished', outcome: {kind: 'refused', reasons: outcome.reasons}});
        } else {
          dispatch({type: 'finished', outcome: {kind: 'rolled-back', why: 'failed', hosts: [], reasons: outcome.reasons}});
        }
      } catch (error) {
        dispatch({type: 'finished', outcome: {kind: 'rolled-back', why: 'failed', hosts: [], reasons: [messageOf(error)]}});
      } finally {
        busy.current = false;
      }
    };
    const once = (work: () => Promise<void>) => async () => {
      if (busy.current) return;
      busy.current = true;
      try {
        await work();
      } finally {
        busy.current = false;
      }
    };
    const keep = once(async () => {
      const {batch, draft, settings} = stateRef.current;
      if (!batch) return;
      try {
        const result = await services.keep(batch);
        if (result.kept.length > 0) {
          await services.saveFleet(draft, settings);
          stateRef.current = {...stateRef.current, fleet: draft};
        }
        dispatch({type: 'finished', outcome: {kind: 'kept', result}});
      } catch (error) {
        dispatch({type: 'finished', outcome: {kind: 'kept', result: {kept: [], problems: [messageOf(error)]}}});
      }
      void refreshStatus();
    });
    const installPersistence = once(async () => {
      const outcome = stateRef.current.outcome;
      if (outcome?.kind !== 'kept') return;
      const hosts = outcome.result.kept.filter((host) => !host.persistent).map((host) => host.host);
      if (hosts.length === 0) return;
      dispatch({type: 'message', text: `installing the boot-time loader on ${hosts.join(', ')}…`});
      let update: KeepResult;
      try {
        update = await services.installPersistence(hosts);
      } catch (error) {
        update = {kept: [], problems: [messageOf(error)]};
      }
      const byHost = new Map(update.kept.map((host) => [host.host, host]));
      const result: KeepResult = {
        kept: outcome.result.kept.map((host) => {
          const updated = byHost.get(host.host);
          return updated ? {...host, persistent: updated.persistent, ...(updated.note === undefined ? {} : {note: updated.note})} : host;
        }),
        problems: [...outcome.result.problems, ...update.problems],
      };
      dispatch({type: 'outcome-updated', outcome: {kind: 'kept', result}});
    });
    const rollbackNow = async () => {
      if (!stateRef.current.batch) {
        // The apply is still running: roll back the moment it returns its batch.
        rollbackRequested.current = true;
        dispatch({type: 'message', text: 'rolling back as soon as the apply returns…'});
        return;
      }
      await once(() => finishRollback('operator'))();
    };
    const deadlinePassed = once(() => finishRollback('expired'));
    return {
      refreshStatus,
      saveFleet,
      discover,
      preview,
      apply,
      undo,
      keep,
      installPersistence,
      rollbackNow,
      deadlinePassed,
      exit: () => {
        // Quit at once; the caller closes the connections (a half-open one must not hold the exit).
        prompts.refuseAll();
        props.onExit?.(0);
        exit();
      },
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [services]);

  useEffect(() => {
    let cancelled = false;
    void (async () => {
      try {
        const {fleet, settings} = await services.loadFleet();
        if (cancelled) return;
        dispatch({type: 'loaded', fleet, settings});
        stateRef.current = {...stateRef.current, fleet};
        if (fleet.hosts.length > 0) await actions.refreshStatus();
      } catch (error) {
        if (!cancelled) dispatch({type: 'message', text: `could not load the saved fleet: ${messageOf(error)}`});
      }
    })();
    return () => {
      cancelled = true;
    };
  }, [services, actions]);

  const inputActive = question === undefined;
  // Ctrl+C works even while a question is showing. Never "leave it half done": during the
  // apply or the countdown it means roll back now; elsewhere nothing is changing, so it quits.
  useInput((input, key) => {
    if (!(key.ctrl && input === 'c')) return;
    if (state.screen === 'apply' || state.screen === 'countdown') {
      prompts.refuseAll();
      void actions.rollbackNow();
    } else actions.exit();
  });
  useInput(
    (_input, key) => {
      if (key.escape && escapeClaims.current === 0 && canGoBack(state)) dispatch({type: 'back'});
    },
    {isActive: inputActive},
  );

  const value = useMemo(() => ({state, dispatch, actions}), [state, actions]);
  return (
    <UiProvider value={props}>
      <WizardContext.Provider value={value}>
        <InputActiveContext.Provider value={inputActive}>
          <EscapeClaimContext.Provider value={escapeClaims}>
          <PrintedHosts printed={state.printed} />
          <Box flexDirection="column">
            {/* A question replaces the screen for a moment (the work lives here, not in screens). */}
            {question ? <QuestionPanel question={question} /> : <CurrentScreen screen={state.screen} />}
          </Box>
          </EscapeClaimContext.Provider>
        </InputActiveContext.Provider>
      </WizardContext.Provider>
    </UiProvider>
  );
}

/**
 * Finished hosts of an apply, printed once above the screens. One Static for the whole session (Ink
 * keeps drawing a Static that was unmounted, so no screen owns one), redrawn only when a host is
 * added: Ink renders at once, unthrottled, whenever a Static re-renders.
 */
const PrintedHosts = memo(function PrintedHosts({printed}: {printed: WizardState['printed']}) {
  return <Static items={[...printed]}>{(entry) => <HostSteps key={entry.id} host={entry.host} steps={entry.steps} live={false} />}</Static>;
});

function CurrentScreen({screen}: {screen: WizardState['screen']}) {
  switch (screen) {
    case 'home':
      return <HomeScreen />;
    case 'add-server':
      return <AddServerScreen />;
    case 'add-from-config':
      return <AddFromConfigScreen />;
    case 'settings':
      return <SettingsScreen />;
    case 'import':
      return <FileScreen mode="import" />;
    case 'export':
      return <FileScreen mode="export" />;
    case 'discover':
      return <DiscoverScreen />;
    case 'roles':
      return <RolesScreen />;
    case 'preview':
      return <PreviewScreen />;
    case 'apply':
      return <ApplyScreen />;
    case 'countdown':
      return <CountdownScreen />;
    case 'done':
      return <DoneScreen />;
    case 'quick-edit':
      return <QuickEditScreen />;
    case 'troubleshoot':
      return <TroubleshootScreen />;
  }
}
