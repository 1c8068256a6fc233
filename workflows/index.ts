/** The one barrel the worker bundles: every workflow Kiln runs. */
export { buildWorkflow } from './build.ts';
export { swarmingBuildWorkflow } from './swarmingBuild.ts';
export { changeVerificationWorkflow } from './changeVerification.ts';
