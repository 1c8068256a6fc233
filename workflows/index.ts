/** The one barrel the worker bundles: every workflow Kiln runs. */
export { buildWorkflow } from './build.ts';
export { swarmingBuildWorkflow } from './swarmingBuild.ts';
export { changeVerificationWorkflow } from './changeVerification.ts';
// ---- launchpad: pollers, periodic builds, promotions, notifications ----
export { gitPollerWorkflow } from './gitPoller.ts';
export { periodicBuildWorkflow } from './periodicBuild.ts';
export { promotionWorkflow, promotionAttemptWorkflow, promotionDryRunWorkflow } from './promotion.ts';
export { notifyEventWorkflow } from './notify.ts';
